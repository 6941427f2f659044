/**
 * Fashion-MNIST for the benchmarks of the trained ViT (tests/fixtures/fmnist_vit.onnx): the
 * gzip'd IDX files, normalised image batches and top-1 accuracy, shared by accuracy.ts,
 * distill.ts and search.ts.
 *
 * @module
 */
import { createSession, loadOrt, type OrtTensor } from "../../src/runtime/ort.ts";

/** Pixels of one 28×28 image. */
const PX = 784;
/** Bytes before the first image (IDX images) and before the first label (IDX labels). */
const IMAGES_HEADER = 16, LABELS_HEADER = 8;

/** One gzip'd IDX file of the dataset folder `dir`, whole. */
export async function readIdx(dir: string, name: string): Promise<Uint8Array> {
  const file = await Deno.open(`${dir}/${name}`);
  const stream = file.readable.pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Images `from` … `from + count` of an IDX image file, normalised as in training, `size` a batch. */
export async function imageBatches(
  images: Uint8Array,
  from: number,
  count: number,
  size: number,
): Promise<Record<string, OrtTensor>[]> {
  const ort = await loadOrt();
  const out: Record<string, OrtTensor>[] = [];
  for (let s = from; s < from + count; s += size) {
    const e = Math.min(from + count, s + size);
    const pixels = images.subarray(IMAGES_HEADER + s * PX, IMAGES_HEADER + e * PX);
    const x = Float32Array.from(pixels, (p) => (p / 255 - 0.286) / 0.353);
    out.push({ input: new ort.Tensor("float32", x, [e - s, 1, 28, 28]) });
  }
  return out;
}

/** Top-1 accuracy of the model `bytes` on `data`, whose first image has label index `first`. */
export async function top1(
  bytes: Uint8Array,
  data: Record<string, OrtTensor>[],
  labels: Uint8Array,
  first: number,
): Promise<number> {
  const session = await createSession(bytes);
  let ok = 0, k = 0;
  for (const feeds of data) {
    const y = (await session.run(feeds))[session.outputNames[0]].data as Float32Array;
    for (let i = 0; i < feeds.input.dims[0]; i++, k++) {
      let best = 0;
      for (let c = 1; c < 10; c++) if (y[i * 10 + c] > y[i * 10 + best]) best = c;
      if (best === labels[LABELS_HEADER + first + k]) ok++;
    }
  }
  await session.release?.();
  return ok / k;
}
