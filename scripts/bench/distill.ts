/**
 * Healing by distillation: the trained Fashion-MNIST ViT pruned to 30% of its MACs (the best
 * setting without retraining in bench/RESULTS.md: global ranking, first-order Taylor, reweight;
 * or `--target` for the target mode), then distilled from the original on unlabeled training
 * images, and scored on the 10 000 test images the run never sees. Also times a training step
 * against onnxruntime's plain forward pass of the pruned model on the same batch.
 *
 *   deno run -A scripts/bench/distill.ts [--data DIR] [--samples N] [--steps N] [--lr X]
 *     [--batch N] [--temperature T] [--seed S] [--target] [--json OUT]
 *
 * DIR holds the IDX files of Fashion-MNIST (Debian's dataset-fashion-mnist by default). The
 * calibration images are the first N training images (no labels are read); the pruning
 * statistics use the first 512 of them, as scripts/bench/accuracy.ts does.
 */
import { parseArgs } from "node:util";
import { pruneModel, type RunOptions } from "../../src/prune.ts";
import { pruneToTarget } from "../../src/target.ts";
import { distillModel, type DistillReport } from "../../src/distill/mod.ts";
import { createCore } from "../../src/core/mod.ts";
import { decodeModel, encodeModel } from "../../src/onnx/model_io.ts";
import { createSession, loadOrt, type OrtTensor } from "../../src/runtime/ort.ts";

const args = parseArgs({
  options: {
    data: { type: "string", default: "/usr/share/datasets/fashion-mnist" },
    samples: { type: "string", default: "8192" },
    steps: { type: "string", default: "2000" },
    lr: { type: "string", default: "5e-4" },
    batch: { type: "string", default: "64" },
    temperature: { type: "string", default: "2" },
    seed: { type: "string", default: "0" },
    "max-seconds": { type: "string", default: "300" },
    target: { type: "boolean", default: false },
    json: { type: "string" },
  },
}).values;

async function idx(name: string): Promise<Uint8Array> {
  const file = await Deno.open(`${args.data}/${name}`);
  const stream = file.readable.pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const [trainImages, testImages, testLabels] = await Promise.all([
  idx("train-images-idx3-ubyte.gz"),
  idx("t10k-images-idx3-ubyte.gz"),
  idx("t10k-labels-idx1-ubyte.gz"),
]);
const PX = 784;
const normalise = (bytes: Uint8Array) => Float32Array.from(bytes, (p) => (p / 255 - 0.286) / 0.353);
const ort = await loadOrt();
const core = await createCore({ backend: "cpu" });
const original = await Deno.readFile(
  new URL("../../tests/fixtures/fmnist_vit.onnx", import.meta.url),
);

function batches(images: Uint8Array, count: number, size: number): Record<string, OrtTensor>[] {
  const out = [];
  for (let s = 0; s < count; s += size) {
    const e = Math.min(count, s + size);
    const x = normalise(images.subarray(16 + s * PX, 16 + e * PX));
    out.push({ input: new ort.Tensor("float32", x, [e - s, 1, 28, 28]) });
  }
  return out;
}

const test = batches(testImages, 10000, 500);

async function accuracy(bytes: Uint8Array): Promise<number> {
  const session = await createSession(bytes);
  let ok = 0, k = 0;
  for (const feeds of test) {
    const y = (await session.run(feeds))[session.outputNames[0]].data as Float32Array;
    for (let i = 0; i < feeds.input.dims[0]; i++, k++) {
      let best = 0;
      for (let c = 1; c < 10; c++) if (y[i * 10 + c] > y[i * 10 + best]) best = c;
      if (best === testLabels[8 + k]) ok++;
    }
  }
  await session.release?.();
  return ok / k;
}

const samples = Number(args.samples), batchSize = Number(args.batch);
const calibration = batches(trainImages, 512, 64);
const distillData = batches(trainImages, samples, 256);

// Pruned to 30% of the MACs: the best setting of bench/RESULTS.md without retraining (global
// ranking of the uniform ratio 0.7186, Taylor scores, reweighting), or the 30% MAC target.
const settings: RunOptions = {
  pruneHeadDims: true,
  criterion: "taylor",
  compensation: "reweight",
  calibration,
  core,
};
const model = decodeModel(original);
const pruned = args.target
  ? await pruneToTarget(model, { macs: 0.3 }, settings)
  : await pruneModel(model, {
    ...settings,
    headPruningRatio: 0.718646240234375,
    pruningRatio: 0.718646240234375,
    allocation: "global",
  });
const macs = pruned.report.macs.after / pruned.report.macs.before;
const unprunedAcc = await accuracy(original);
const prunedAcc = await accuracy(encodeModel(pruned.model));
console.log(
  `unpruned ${(unprunedAcc * 100).toFixed(2)}%; pruned to ${(macs * 100).toFixed(1)}% MACs ` +
    `(${args.target ? "target" : "global taylor reweight"}): ${(prunedAcc * 100).toFixed(2)}%`,
);

// Cost of a step against a plain forward pass of the pruned model on the same batch.
const forwardMs = await (async () => {
  const session = await createSession(encodeModel(pruned.model));
  const x = batches(trainImages, batchSize, batchSize)[0];
  const times = [];
  for (let i = 0; i < 60; i++) {
    const t0 = performance.now();
    await session.run(x);
    times.push(performance.now() - t0);
  }
  await session.release?.();
  return times.slice(10).sort((a, b) => a - b)[25];
})();

let last = 0;
const report: DistillReport = await distillModel(pruned.model, original, distillData, {
  steps: Number(args.steps),
  lr: Number(args.lr),
  batchSize,
  temperature: Number(args.temperature),
  seed: Number(args.seed),
  maxSeconds: Number(args["max-seconds"]),
  onProgress: (step, steps, loss) => {
    if (step - last >= steps / 10 || step === steps) {
      last = step;
      console.log(`  step ${step}/${steps} loss ${loss.toFixed(4)}`);
    }
  },
});
const healedAcc = await accuracy(encodeModel(pruned.model));
console.log(
  `distilled ${report.steps} steps (${report.stopped}, best step ${report.bestStep}) in ` +
    `${report.seconds.toFixed(1)} s on ${samples} unlabeled images: ` +
    `${(healedAcc * 100).toFixed(2)}% (held-out loss ${report.heldOut?.before.toFixed(4)} → ` +
    `${report.heldOut?.after.toFixed(4)})`,
);
console.log(
  `step ${report.msPerStep.toFixed(1)} ms against a forward pass of ${forwardMs.toFixed(1)} ms ` +
    `at batch ${batchSize}: ×${(report.msPerStep / forwardMs).toFixed(1)}`,
);
if (args.json) {
  await Deno.writeTextFile(
    args.json,
    JSON.stringify(
      {
        args,
        macs,
        accuracy: { unpruned: unprunedAcc, pruned: prunedAcc, distilled: healedAcc },
        forwardMs,
        report,
      },
      null,
      2,
    ) + "\n",
  );
}
core.dispose();
