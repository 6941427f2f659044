/**
 * How close the pruned model stays to the original on held-out data: top-1 agreement, mean KL
 * divergence of the softmax outputs, mean cosine similarity of the output vectors (logits or
 * embeddings), and accuracy before/after when labels are given. Both models run in onnxruntime
 * on the same batches; outputs are compared row by row along their last axis.
 *
 * @module
 */
import { createSession, type OrtTensor } from "./runtime/ort.ts";

/** Fidelity of a pruned model, as in the report. */
export interface Fidelity {
  /** Output rows compared. */
  samples: number;
  /** Share of rows whose arg-max is the same. */
  top1Agreement: number;
  /** Mean KL(original ‖ pruned) of the softmax over the last axis. */
  kl: number;
  /** Mean cosine similarity of the output rows. */
  cosine: number;
  /** With labels: accuracy of both models. */
  accuracy?: { before: number; after: number };
}

/** Held-out data: batches of feeds, and optionally one label per output row, in order. */
export interface Evaluation {
  /** Feeds by graph input name, one record per batch. */
  batches: Iterable<Record<string, OrtTensor>> | AsyncIterable<Record<string, OrtTensor>>;
  /** The class of every output row, in order (for accuracy). */
  labels?: ArrayLike<number>;
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

function softmax(row: Float32Array): Float64Array {
  const max = row.reduce((a, b) => Math.max(a, b), -Infinity);
  const e = Float64Array.from(row, (v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Compares the first outputs of two models over the evaluation batches. */
export async function fidelity(
  original: Uint8Array,
  pruned: Uint8Array,
  evaluation: Evaluation,
): Promise<Fidelity> {
  const purpose = "evaluation on held-out data";
  const [a, b] = [
    await createSession(original, {}, purpose),
    await createSession(pruned, {}, purpose),
  ];
  let rows = 0, agree = 0, kl = 0, cosine = 0, correctA = 0, correctB = 0;
  try {
    for await (const feeds of evaluation.batches) {
      const ya = (await a.run(feeds))[a.outputNames[0]];
      const yb = (await b.run(feeds))[b.outputNames[0]];
      const width = Number(ya.dims[ya.dims.length - 1]);
      const da = ya.data as Float32Array, db = yb.data as Float32Array;
      for (let r = 0; r < da.length / width; r++, rows++) {
        const ra = da.subarray(r * width, (r + 1) * width);
        const rb = db.subarray(r * width, (r + 1) * width);
        const [ia, ib] = [argmax(ra), argmax(rb)];
        if (ia === ib) agree++;
        if (evaluation.labels) {
          if (ia === evaluation.labels[rows]) correctA++;
          if (ib === evaluation.labels[rows]) correctB++;
        }
        const [pa, pb] = [softmax(ra), softmax(rb)];
        for (let i = 0; i < width; i++) {
          if (pa[i] > 0) kl += pa[i] * Math.log(pa[i] / Math.max(pb[i], 1e-30));
        }
        let dot = 0, na = 0, nb = 0;
        for (let i = 0; i < width; i++) {
          dot += ra[i] * rb[i];
          na += ra[i] * ra[i];
          nb += rb[i] * rb[i];
        }
        cosine += na && nb ? dot / Math.sqrt(na * nb) : 0;
      }
    }
  } finally {
    await a.release?.();
    await b.release?.();
  }
  const n = Math.max(rows, 1);
  return {
    samples: rows,
    top1Agreement: agree / n,
    kl: kl / n,
    cosine: cosine / n,
    ...(evaluation.labels ? { accuracy: { before: correctA / n, after: correctB / n } } : {}),
  };
}
