/**
 * Calibration overhead: collecting statistics over 512 Fashion-MNIST test images (the inputs of
 * every MLP fc2 and attention projection of the trained ViT) against plain onnxruntime inference
 * of the same batches, side by side. Both reuse one session per iteration's model. Gram
 * matrices are timed over all positions and over 1 in 2, 3, 4 (the default) positions; the
 * gradient criteria's pass (forward, backward graph, gate sums) is timed too.
 * Run: `deno bench -A scripts/bench/calibration_bench.ts`.
 */
import { collectStats } from "../../src/calibration/stats.ts";
import { gateReader } from "../../src/calibration/gradients.ts";
import { buildGradientModel } from "../../src/autodiff/backward.ts";
import { probeTensors } from "../../src/runtime/probe.ts";
import { decodeModel } from "../../src/onnx/model_io.ts";
import { createSession, loadOrt } from "../../src/runtime/ort.ts";

const ort = await loadOrt();
const fixtures = new URL("../../tests/fixtures/", import.meta.url);
const bytes = await Deno.readFile(new URL("fmnist_vit.onnx", fixtures));
const data = await Deno.readFile(new URL("fmnist_test_1000.bin", fixtures));
const PX = 784;
const batches = Array.from({ length: 8 }, (_, b) => ({
  input: new ort.Tensor(
    "float32",
    Float32Array.from(
      data.subarray(16 + b * 64 * PX, 16 + (b + 1) * 64 * PX),
      (p) => (p / 255 - 0.286) / 0.353,
    ),
    [64, 1, 28, 28],
  ),
}));
const model = decodeModel(bytes);
const layers = model.graph!.node!
  .filter((n) => /(fc2|proj)\/MatMul$/.test(n.name!) && !/patch_embed/.test(n.name!))
  .map((n) => n.input![0]);

Deno.bench("plain inference, 512 images", { group: "calibration", baseline: true }, async () => {
  const session = await createSession(bytes);
  for (const feeds of batches) await session.run(feeds);
});
Deno.bench("statistics (sums, squares), 512 images", { group: "calibration" }, async () => {
  await collectStats(model, layers, batches);
});
Deno.bench("statistics with Gram matrices, 512 images", { group: "calibration" }, async () => {
  await collectStats(model, layers, batches, { gram: new Set(layers) });
});
for (const stride of [2, 3, 4]) {
  Deno.bench(
    `statistics with Gram matrices from 1 in ${stride} positions, 512 images`,
    { group: "calibration" },
    async () => {
      await collectStats(model, layers, batches, { gram: new Set(layers), gramStride: stride });
    },
  );
}

const shapes = await probeTensors(model, { batch: 2 });
Deno.bench(
  "statistics and gate gradients (backward graph), 512 images",
  { group: "calibration" },
  async () => {
    const backward = buildGradientModel(model, shapes, layers, { batch: 2 });
    const reader = gateReader(backward.gates, new Map());
    await collectStats(backward.model, layers, batches, { also: reader });
  },
);
