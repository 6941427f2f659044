/**
 * A tensor's kept slices along one axis, handed out in pieces through one reused buffer instead of
 * made whole: a cut tensor is written without an allocation of its own (the cut bytes of a whole
 * model would otherwise be garbage until the next collection: tens of MiB for ViT-B).
 *
 * @module
 */

/** Where pieces go; each piece is only valid until the promise settles. */
export type Sink = (bytes: Uint8Array) => Promise<void>;

/** Bytes handed out per piece at most (besides runs longer than this, handed out as views). */
const PIECE = 4 << 20;

/** Contiguous kept slices at least this long are copied as slices, shorter ones element-wise. */
const RUN_COPY_FROM = 64;

let scratch: Uint8Array | undefined;
let rowScratch: Uint8Array | undefined;
/** Whether the shared buffers are in use (a cut streamed while another is: it gets its own). */
let busy = false;

/**
 * Streams the gather of `kept` indices along `axis` of a row-major tensor `src` with `dims` and
 * `elementSize`-byte elements to `sink`: the same bytes as the compute core's gatherAxis, in
 * order.
 *
 * @example await cutStream(bytes, [768, 3072], 4, 1, kept, (b) => writeAll(file, b));
 */
export async function cutStream(
  src: Uint8Array,
  dims: number[],
  elementSize: number,
  axis: number,
  kept: Uint32Array,
  sink: Sink,
): Promise<void> {
  const axisLength = dims[axis];
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1) * elementSize;
  if (src.length !== outer * axisLength * inner) {
    throw new RangeError(`${src.length} bytes do not fill dims [${dims.join(", ")}]`);
  }
  for (const k of kept) {
    if (k >= axisLength) throw new RangeError(`index ${k} outside axis ${axis} of ${axisLength}`);
  }
  const own = busy;
  busy = true;
  try {
    const out = own ? new Uint8Array(PIECE) : (scratch ??= new Uint8Array(PIECE));
    if (inner >= RUN_COPY_FROM || kept.length === 0) {
      await bySlices(src, outer, axisLength, inner, kept, out, sink);
    } else {
      const rowBytes = axisLength * inner;
      const row = own || (rowScratch?.length ?? 0) < rowBytes
        ? new Uint8Array(rowBytes)
        : rowScratch!;
      if (!own) rowScratch = row;
      await byElements(src, outer, rowBytes, inner, kept, row, out, sink);
    }
  } finally {
    if (!own) busy = false;
  }
}

/** Runs of consecutive kept indices: [first, count] pairs. */
function runsOf(kept: Uint32Array): number[] {
  const runs: number[] = [];
  for (let i = 0; i < kept.length;) {
    let j = i + 1;
    while (j < kept.length && kept[j] === kept[j - 1] + 1) j++;
    runs.push(kept[i], j - i);
    i = j;
  }
  return runs;
}

async function bySlices(
  src: Uint8Array,
  outer: number,
  axisLength: number,
  inner: number,
  kept: Uint32Array,
  out: Uint8Array,
  sink: Sink,
): Promise<void> {
  const runs = runsOf(kept);
  let pos = 0;
  for (let o = 0; o < outer; o++) {
    for (let r = 0; r < runs.length; r += 2) {
      const from = (o * axisLength + runs[r]) * inner;
      const length = runs[r + 1] * inner;
      if (length > out.length) {
        if (pos) await sink(out.subarray(0, pos)), pos = 0;
        await sink(src.subarray(from, from + length));
        continue;
      }
      if (pos + length > out.length) await sink(out.subarray(0, pos)), pos = 0;
      out.set(src.subarray(from, from + length), pos);
      pos += length;
    }
  }
  if (pos) await sink(out.subarray(0, pos));
}

async function byElements(
  src: Uint8Array,
  outer: number,
  rowBytes: number,
  inner: number,
  kept: Uint32Array,
  row: Uint8Array,
  out: Uint8Array,
  sink: Sink,
): Promise<void> {
  // Whole words where the element allows: the row is copied to an aligned buffer first.
  const word = inner % 4 === 0 ? 4 : inner % 2 === 0 ? 2 : 1;
  const per = inner / word;
  const view = (b: Uint8Array) =>
    word === 4
      ? new Uint32Array(b.buffer, b.byteOffset, b.length >> 2)
      : word === 2
      ? new Uint16Array(b.buffer, b.byteOffset, b.length >> 1)
      : b;
  const rowWords = view(row), outWords = view(out);
  const keptBytes = kept.length * inner;
  const rowsPerPiece = Math.max(1, Math.floor(out.length / keptBytes));
  const big = keptBytes > out.length ? new Uint8Array(keptBytes) : undefined;
  const bigWords = big && view(big);
  let pos = 0; // in words
  for (let o = 0; o < outer; o++) {
    row.set(src.subarray(o * rowBytes, (o + 1) * rowBytes));
    const dst = bigWords ?? outWords;
    if (bigWords) pos = 0;
    if (per === 1) {
      for (let i = 0; i < kept.length; i++) dst[pos++] = rowWords[kept[i]];
    } else {
      for (let i = 0; i < kept.length; i++) {
        const at = kept[i] * per;
        for (let j = 0; j < per; j++) dst[pos++] = rowWords[at + j];
      }
    }
    if (big) {
      await sink(big);
    } else if ((o + 1) % rowsPerPiece === 0 || o === outer - 1) {
      await sink(out.subarray(0, pos * word));
      pos = 0;
    }
  }
}
