/**
 * Fidelity of a candidate to the original model on held-out data: the original's outputs are
 * computed once, each candidate runs over the same batches and is compared row by row along
 * the last axis of the first output — KL divergence of the softmax and top-1 agreement
 * (classifiers: [batch, classes] outputs), cosine similarity (every output).
 *
 * @module
 */
import { createSession } from "../runtime/ort.ts";
import type { Feeds } from "./split.ts";

/** The original model's first output over the held-out batches. */
export interface Reference {
  /** One array per batch. */
  outputs: Float32Array[];
  /** Rank of the first output. */
  rank: number;
  /** Its last dim: the row compared. */
  width: number;
}

/** How close a candidate's outputs stay to the original's. */
export interface CandidateFidelity {
  /** Mean KL(original ‖ candidate) of the softmax over the last axis. */
  kl: number;
  /** Share of rows with the same arg-max. */
  top1Agreement: number;
  /** Mean cosine similarity of the rows. */
  cosine: number;
}

const PURPOSE = "scoring the search's candidates on held-out data";

async function outputsOf(bytes: Uint8Array, batches: Feeds[]) {
  const session = await createSession(bytes, {}, PURPOSE);
  try {
    const out = [];
    for (const feeds of batches) {
      const y = (await session.run(feeds))[session.outputNames[0]];
      out.push({ data: Float32Array.from(y.data as Float32Array), dims: y.dims.map(Number) });
    }
    return out;
  } finally {
    await session.release?.();
  }
}

/** Runs the original model over the held-out batches once. */
export async function reference(original: Uint8Array, heldOut: Feeds[]): Promise<Reference> {
  const out = await outputsOf(original, heldOut);
  const dims = out[0]?.dims ?? [1];
  return { outputs: out.map((o) => o.data), rank: dims.length, width: dims[dims.length - 1] };
}

/** Scores one candidate (its model's bytes) against the reference. */
export async function candidateFidelity(
  bytes: Uint8Array,
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
