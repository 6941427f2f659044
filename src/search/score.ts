/**
 * Fidelity of a candidate to the original model on held-out data: the original's outputs are
 * computed once, each candidate runs over the same batches and is compared row by row along
 * the last axis of the first output — KL divergence of the softmax and top-1 agreement
 * (classifiers: [batch, classes] outputs), cosine similarity (every output). An output with
 * positions between batch and width ([batch, sequence, width] hidden states) is first pooled
 * to one row per sample, the mean over its positions (over those the feeds' `attention_mask`
 * keeps, when it has one of that shape), as a sentence embedding is computed: on
 * all-MiniLM-L6-v2 the pooled cosine on the held-out emails ranks the candidates as the
 * sentence embeddings' cosine on other emails does, the cosine of every position did not
 * (bench/RESULTS.md).
 *
 * @module
 */
import { createSession } from "../runtime/ort.ts";
import { createModelSession } from "../runtime/model_session.ts";
import type { ModelProto } from "../onnx/proto.ts";
import type { Feeds } from "./split.ts";

/** The original model's first output over the held-out batches. */
export interface Reference {
  /** One array per batch: its rows (pooled over positions when the output has them). */
  outputs: Float32Array[];
  /** Rank of the first output. */
  rank: number;
  /** Its last dim: the row compared. */
  width: number;
}

/** How close a candidate's outputs stay to the original's. */
export interface CandidateFidelity {
  /** Mean KL(original ‖ candidate) of the softmax over the last axis (rows: one per sample,
   * pooled over positions where the output has them). */
  kl: number;
  /** Share of rows with the same arg-max. */
  top1Agreement: number;
  /** Mean cosine similarity of the rows. */
  cosine: number;
}

const PURPOSE = "scoring the search's candidates on held-out data";

/**
 * One row per sample of a [batch, ...positions, width] output: the mean over the positions,
 * over those `mask` ([batch, positions], non-zero = kept) keeps when it fits; a rank-2 output
 * as it is.
 */
export function poolRows(data: Float32Array, dims: number[], mask?: ArrayLike<number | bigint>) {
  if (dims.length < 3) return data;
  const b = dims[0], w = dims[dims.length - 1];
  const p = dims.slice(1, -1).reduce((a, d) => a * d, 1);
  const masked = mask !== undefined && mask.length === b * p;
  const out = new Float32Array(b * w);
  for (let r = 0; r < b; r++) {
    const sum = new Float64Array(w);
    let count = 0;
    for (let t = 0; t < p; t++) {
      if (masked && !Number(mask[r * p + t])) continue;
      count++;
      const at = (r * p + t) * w;
      for (let c = 0; c < w; c++) sum[c] += data[at + c];
    }
    for (let c = 0; c < w; c++) out[r * w + c] = count ? sum[c] / count : 0;
  }
  return out;
}

async function outputsOf(model: ModelProto | Uint8Array, batches: Feeds[]) {
  const session = model instanceof Uint8Array
    ? await createSession(model, {}, PURPOSE)
    : await createModelSession(model, {}, PURPOSE);
  try {
    const out = [];
    for (const feeds of batches) {
      const y = (await session.run(feeds))[session.outputNames[0]];
      const dims = y.dims.map(Number);
      const mask = feeds.attention_mask?.data as ArrayLike<number | bigint> | undefined;
      out.push({ data: Float32Array.from(poolRows(y.data as Float32Array, dims, mask)), dims });
    }
    return out;
  } finally {
    await session.release?.();
  }
}

/** Runs the original model (or its bytes) over the held-out batches once. */
export async function reference(
  original: ModelProto | Uint8Array,
  heldOut: Feeds[],
): Promise<Reference> {
  const out = await outputsOf(original, heldOut);
  const dims = out[0]?.dims ?? [1];
  return { outputs: out.map((o) => o.data), rank: dims.length, width: dims[dims.length - 1] };
}

/** Scores one candidate (its model, or the model's bytes) against the reference. */
export async function candidateFidelity(
  bytes: ModelProto | Uint8Array,
  heldOut: Feeds[],
  ref: Reference,
): Promise<CandidateFidelity> {
  const out = await outputsOf(bytes, heldOut);
  const w = ref.width;
  let rows = 0, agree = 0, kl = 0, cosine = 0;
  out.forEach(({ data: b }, i) => {
    const a = ref.outputs[i];
    for (let r = 0; r < a.length / w; r++, rows++) {
      const ra = a.subarray(r * w, (r + 1) * w), rb = b.subarray(r * w, (r + 1) * w);
      let ia = 0, ib = 0, ma = -Infinity, mb = -Infinity;
      let dot = 0, na = 0, nb = 0;
      for (let j = 0; j < w; j++) {
        if (ra[j] > ra[ia]) ia = j;
        if (rb[j] > rb[ib]) ib = j;
        ma = Math.max(ma, ra[j]);
        mb = Math.max(mb, rb[j]);
        dot += ra[j] * rb[j];
        na += ra[j] * ra[j];
        nb += rb[j] * rb[j];
      }
      if (ia === ib) agree++;
      cosine += na && nb ? dot / Math.sqrt(na * nb) : 0;
      // KL of the softmaxes, from log-sum-exps.
      let sa = 0, sb = 0;
      for (let j = 0; j < w; j++) {
        sa += Math.exp(ra[j] - ma);
        sb += Math.exp(rb[j] - mb);
      }
      const la = ma + Math.log(sa), lb = mb + Math.log(sb);
      let k = 0;
      for (let j = 0; j < w; j++) {
        const lpa = ra[j] - la;
        k += Math.exp(lpa) * (lpa - (rb[j] - lb));
      }
      kl += Math.max(0, k);
    }
  });
  const n = Math.max(rows, 1);
  return { kl: kl / n, top1Agreement: agree / n, cosine: cosine / n };
}
