/**
 * The held-out split of calibration data: a seeded choice of samples (rows along the batch
 * axis) that score the candidates of a search and never calibrate them. Each batch is split in
 * two, so samples batched together (e.g. token sequences of one length) stay together.
 *
 * @module
 */
import { loadOrt, type OrtTensor } from "../runtime/ort.ts";

/** Feeds by graph input name. */
export type Feeds = Record<string, OrtTensor>;

/** The two parts of the calibration data. */
export interface Split {
  /** Batches that calibrate the candidates. */
  fit: Feeds[];
  /** Batches that score them. */
  heldOut: Feeds[];
  /** Samples in each part. */
  samples: { fit: number; heldOut: number };
}

/** A small seeded generator (mulberry32). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The samples of a batch: the first dim shared by all its inputs. */
function batchSize(feeds: Feeds): number {
  const sizes = Object.values(feeds).map((t) => Number(t.dims[0] ?? 1));
  return Math.max(1, ...sizes);
}

/**
 * Splits `batches` sample by sample: `share` of all samples (at least one) chosen by a seeded
 * shuffle are held out, the others calibrate. The same batches, share and seed always give the
 * same split; the two parts never share a sample.
 */
export async function splitBatches(
  batches: Feeds[],
  share: number,
  seed: number,
): Promise<Split> {
  const sizes = batches.map(batchSize);
  const total = sizes.reduce((a, b) => a + b, 0);
  const count = Math.min(total - 1, Math.max(1, Math.round(total * share)));
  const order = Array.from({ length: total }, (_, i) => i);
  const rng = mulberry32(seed);
  for (let i = total - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const held = new Set(order.slice(0, Math.max(0, count)));
  const ort = await loadOrt();
  const fit: Feeds[] = [], heldOut: Feeds[] = [];
  let first = 0;
  for (let b = 0; b < batches.length; b++) {
    const n = sizes[b];
    const rows = Array.from({ length: n }, (_, r) => r);
    const out = rows.filter((r) => held.has(first + r));
    const keep = rows.filter((r) => !held.has(first + r));
    first += n;
    const take = (picked: number[]) => {
      const feeds: Feeds = {};
      for (const [name, t] of Object.entries(batches[b])) {
        if (Number(t.dims[0]) !== n || t.dims.length === 0) {
          feeds[name] = t; // not batched along the first dim: shared by every row
          continue;
        }
        // Numeric typed arrays (float, int64 as BigInt64Array, bool as Uint8Array).
        const data = t.data as Float32Array;
        const row = data.length / n;
        const values = new (data.constructor as Float32ArrayConstructor)(picked.length * row);
        picked.forEach((r, i) => values.set(data.subarray(r * row, (r + 1) * row), i * row));
        feeds[name] = new ort.Tensor(t.type as "float32", values, [
          picked.length,
          ...t.dims.slice(1),
        ]);
      }
      return feeds;
    };
    if (keep.length) fit.push(keep.length === n ? batches[b] : take(keep));
    if (out.length) heldOut.push(out.length === n ? batches[b] : take(out));
  }
  return { fit, heldOut, samples: { fit: total - count, heldOut: count } };
}
