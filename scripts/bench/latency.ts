/**
 * Latency-aware pruning to a speed-up target on a DeiT-Small-shaped export (random weights):
 * profile the block latency table, prune with `--target-speedup` (head dims and MLP channels,
 * round to 8), and compare the latency model's estimate with onnxruntime measurements — for the
 * final model and for every step (R²). Head-aligned against unaligned pruning: alignment.ts.
 *
 *   .venv/bin/python scripts/verify/make_exports.py bench/data deits
 *   deno run -A scripts/bench/latency.ts [--model bench/data/timm_deit_small.onnx]
 *     [--speedup 2] [--budget 120] [--batch 1] [--threads N] [--runtime cpu|wasm|webgpu]
 *     [--json OUT]
 */
import { parseArgs } from "node:util";
import { decodeModel, encodeModel } from "../../src/onnx/model_io.ts";
import type { ModelProto } from "../../src/onnx/proto.ts";
import { createCore } from "../../src/core/mod.ts";
import { pruneToTarget } from "../../src/target.ts";
import { createLatencyModel, measureLatency } from "../../src/latency/model.ts";
import type { LatencyRuntime } from "../../src/latency/runtime.ts";
import { ProgressBar } from "../../src/calibration/progress.ts";

const args = parseArgs({
  options: {
    model: { type: "string", default: "bench/data/timm_deit_small.onnx" },
    speedup: { type: "string", default: "2" },
    budget: { type: "string", default: "120" },
    batch: { type: "string", default: "1" },
    threads: { type: "string" },
    runtime: { type: "string", default: "cpu" },
    json: { type: "string" },
  },
}).values;

let bytes: Uint8Array;
try {
  bytes = await Deno.readFile(args.model!);
} catch {
  console.error(
    `error: ${args.model} not found; make it with\n` +
      `  .venv/bin/python scripts/verify/make_exports.py bench/data deits`,
  );
  Deno.exit(1);
}
const batch = Number(args.batch);
const threads = args.threads ? Number(args.threads) : undefined;
const runtime = args.runtime as LatencyRuntime;
const core = await createCore({ backend: "cpu" });
const original = () => decodeModel(bytes);

/** Median of `rounds` interleaved measurements of each model (this machine is noisy). */
async function measureAll(models: ModelProto[], rounds = 3): Promise<number[]> {
  const runs = models.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (const [i, m] of models.entries()) {
      runs[i].push(await measureLatency(m, { batch, runs: 11, threads, runtime }));
    }
  }
  return runs.map((t) => t.sort((a, b) => a - b)[Math.floor(t.length / 2)]);
}

const progress = new ProgressBar(0, { unit: "block shapes timed" });
const latency = await createLatencyModel(original(), {
  batch,
  budgetSeconds: Number(args.budget),
  threads,
  runtime,
  onProgress: progress.callback,
});
progress.finish();
const levels = latency.table.axes.emb.length;
console.log(
  `latency table: ${latency.table.ms.length} block shapes (${levels} per axis), ` +
    `${latency.table.seconds.toFixed(1)} s; original ${latency.originalMs.toFixed(2)} ms ` +
    `(outside the blocks: ${latency.restMs.toFixed(2)} ms; a block inside the model costs ` +
    `×${latency.blockScale.toFixed(2)} its time alone${latency.fitted ? "" : ", not fitted"})`,
);

const steps: { model: ModelProto; estimated: number }[] = [
  { model: original(), estimated: latency.originalMs },
];
const result = await pruneToTarget(original(), {
  speedup: Number(args.speedup),
  latency,
  steps: 4,
  // The next step prunes the same model object further: keep a copy of each step's result.
  onStep: (model, step) => {
    steps.push({ model: decodeModel(encodeModel(model)), estimated: step.latencyMs! });
  },
}, { pruneHeadDims: true, roundTo: 8, core });

const measured = await measureAll(steps.map((s) => s.model));
const estimated = steps.map((s) => s.estimated);
const mean = measured.reduce((a, b) => a + b, 0) / measured.length;
const ssTot = measured.reduce((a, m) => a + (m - mean) ** 2, 0);
const ssRes = measured.reduce((a, m, i) => a + (m - estimated[i]) ** 2, 0);
const r2 = 1 - ssRes / ssTot;
console.log("\nstep  params      estimated ms  measured ms");
steps.forEach((_, i) => {
  const params = i === 0 ? result.report.params.before : result.target.steps[i - 1].params;
  console.log(
    `${String(i).padEnd(5)} ${(params / 1e6).toFixed(2).padStart(6)} M  ` +
      `${estimated[i].toFixed(2).padStart(12)}  ${measured[i].toFixed(2).padStart(11)}`,
  );
});
const estSpeedup = estimated[0] / estimated.at(-1)!;
const realSpeedup = measured[0] / measured.at(-1)!;
console.log(
  `\nspeed-up: estimated ×${estSpeedup.toFixed(2)}, measured ×${realSpeedup.toFixed(2)} ` +
    `(estimate off by ${((estSpeedup / realSpeedup - 1) * 100).toFixed(1)}%); ` +
    `R² of estimated vs measured latency over the ${steps.length} models: ${r2.toFixed(4)}`,
);
console.log(
  result.report.blocks.map((b) =>
    b.kind === "attention" ? `H${b.heads.after}×${b.headDim.after}` : `MLP ${b.channels.after}`
  ).join(", "),
);

if (args.json) {
  await Deno.writeTextFile(
    args.json,
    JSON.stringify(
      {
        table: { shapes: latency.table.ms.length, seconds: latency.table.seconds, levels },
        steps: steps.map((_, i) => ({ estimated: estimated[i], measured: measured[i] })),
        speedup: { estimated: estSpeedup, measured: realSpeedup },
        r2,
      },
      null,
      2,
    ) + "\n",
  );
}
core.dispose();
