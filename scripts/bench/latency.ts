/**
 * Latency-aware pruning to a speed-up target on a DeiT-Small-shaped export (random weights),
 * the way the command line does it: profile the block latency table over every shape the run can
 * reach, prune with `--target-speedup` (4 steps, round to 8, every block keeping an eighth of
 * each kind), then save every step's model and time the saved files against each other by
 * interleaved rounds (medians of rounds; the rounds' spread is the noise), on the wall clock
 * and on the process's CPU time (with one thread; what a run takes on the machine alone, when
 * other work keeps it busy). `--clock` is the clock the tool itself plans and checks on. Two
 * runs: with head dims (`--prune-head-dims`) and MLP channels only (`--head-pruning-ratio 0`).
 * Head-aligned against unaligned pruning: alignment.ts.
 *
 *   .venv/bin/python scripts/verify/make_exports.py bench/data deits
 *   deno run -A scripts/bench/latency.ts [--model bench/data/timm_deit_small.onnx]
 *     [--speedup 2] [--budget 90] [--batch 1] [--threads 1] [--runtime cpu|wasm|webgpu]
 *     [--clock wall|cpu] [--modes dims,mlp] [--rounds 7] [--cache DIR] [--json OUT]
 */
import { parseArgs } from "node:util";
import { decodeModel, encodeModel } from "../../src/onnx/model_io.ts";
import { createCore } from "../../src/core/mod.ts";
import { keptFloor, pruneToTarget } from "../../src/target.ts";
import { createLatencyModel, measureInterleaved, targetScope } from "../../src/latency/model.ts";
import type { LatencyClock, LatencyRuntime } from "../../src/latency/runtime.ts";
import { ProgressBar } from "../../src/calibration/progress.ts";
import type { RunOptions } from "../../src/prune.ts";

const args = parseArgs({
  options: {
    model: { type: "string", default: "bench/data/timm_deit_small.onnx" },
    speedup: { type: "string", default: "2" },
    budget: { type: "string", default: "90" },
    batch: { type: "string", default: "1" },
    threads: { type: "string", default: "1" },
    runtime: { type: "string", default: "cpu" },
    clock: { type: "string", default: "wall" },
    modes: { type: "string", default: "dims,mlp" },
    rounds: { type: "string", default: "7" },
    cache: { type: "string" },
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
const batch = Number(args.batch), rounds = Number(args.rounds), speedup = Number(args.speedup);
const threads = Number(args.threads);
const runtime = args.runtime as LatencyRuntime;
const clock = args.clock as LatencyClock;
// CPU time is latency for one thread on the processor only.
const clocks: LatencyClock[] = runtime === "webgpu" || (runtime === "cpu" && threads !== 1)
  ? ["wall"]
  : ["wall", "cpu"];
const roundTo = 8, minKeep = 0.125;
const core = await createCore({ backend: "cpu" });
const load = () => Deno.loadavg().map((l) => l.toFixed(1)).join(" ");
const stepsDir = `${args.model!.replace(/\.onnx$/, "")}_steps`;
await Deno.mkdir(stepsDir, { recursive: true });

const results: Record<string, unknown>[] = [];
for (const mode of args.modes!.split(",")) {
  // MLP channels only: a head ratio of 0 keeps attention out of the target.
  const options: RunOptions = mode === "dims"
    ? { pruneHeadDims: true, roundTo }
    : { headPruningRatio: 0, roundTo };
  console.log(
    `\n== ${runtime}, ${threads} thread(s), batch ${batch}, ${clock} clock: ` +
      `--target-speedup ${speedup}` +
      `${mode === "dims" ? " --prune-head-dims" : " (MLP channels only)"} --round-to ${roundTo}` +
      ` — load average ${load()}`,
  );
  const started = performance.now();
  const progress = new ProgressBar(0, { unit: "block shapes timed" });
  const latency = await createLatencyModel(decodeModel(bytes), {
    batch,
    budgetSeconds: Number(args.budget),
    threads,
    runtime,
    clock,
    rounds,
    ...(args.cache ? { cacheDir: args.cache } : {}),
    scope: targetScope(options, minKeep),
    onProgress: progress.callback,
  });
  progress.finish();
  const t = latency.table;
  console.log(
    `latency table: ${t.ms.length} block shapes (${
      Object.entries(t.axes).filter(([a, v]) => v.length > 1 && !(t.tiedV && a === "v"))
        .map(([a, v]) => `${a} ${v[0]}…${v.at(-1)} in ${v.length}`).join(", ")
    }${t.tiedV ? ", V dims = Q/K dims" : ""}), ${t.passes} passes, ${t.seconds.toFixed(1)} s` +
      `${t.fromCache ? " (from the cache)" : ""}; original ${latency.originalMs.toFixed(2)} ms, ` +
      `probe ${latency.probeMs.toFixed(2)} ms; a block inside the model costs ` +
      `×${latency.blockScale.toFixed(2)} its time alone${latency.fitted ? "" : " (not fitted)"}` +
      `; fit of the table ${(latency.fit.relativeError * 100).toFixed(1)}% rms` +
      (t.note ? `\nnote: ${t.note}` : ""),
  );

  // Every step's model saved; a corrected last step replaces the last file.
  const files = [`${stepsDir}/${runtime}_${mode}_0.onnx`];
  await Deno.writeFile(files[0], bytes);
  const estimated = [latency.originalMs];
  const result = await pruneToTarget(decodeModel(bytes), {
    speedup,
    latency,
    steps: 4,
    minKeep,
    onStep: async (model, step) => {
      if (step.correction) {
        files.pop();
        estimated.pop();
      }
      const file = `${stepsDir}/${runtime}_${mode}_${files.length}.onnx`;
      await Deno.writeFile(file, encodeModel(model));
      files.push(file);
      estimated.push(step.latencyMs!);
    },
  }, { ...options, core });

  // The tool's final estimates (the last step's after its shapes were timed exactly).
  estimated.splice(
    0,
    estimated.length,
    result.target.before,
    ...result.target.steps.map((s) => s.latencyMs!),
  );
  // The saved files, timed against each other by interleaved rounds, on each clock.
  const saved = await Promise.all(files.map((f) => Deno.readFile(f)));
  const check = result.target.measured!;
  const byClock: Record<string, unknown> = {};
  let primary: { off: number; r2: number; measured: number } | undefined;
  for (const c of clocks) {
    const timings = await measureInterleaved(saved, {
      batch,
      threads,
      runtime,
      rounds,
      runs: 5,
      clock: c,
    });
    const measured = timings.medians;
    const spread = (i: number) => {
      const all = timings.rounds.map((r) => r[i]);
      return [Math.min(...all), Math.max(...all)];
    };
    const mean = measured.reduce((a, b) => a + b, 0) / measured.length;
    const ssTot = measured.reduce((a, m) => a + (m - mean) ** 2, 0);
    const ssRes = measured.reduce((a, m, i) => a + (m - estimated[i]) ** 2, 0);
    const r2 = 1 - ssRes / ssTot;
    console.log(`\n${c} clock — step  params      estimated ms  measured ms (rounds)`);
    files.forEach((_, i) => {
      const params = i === 0 ? result.report.params.before : result.target.steps[i - 1].params;
      const [lo, hi] = spread(i);
      console.log(
        `${String(i).padStart(17)} ${(params / 1e6).toFixed(2).padStart(6)} M  ` +
          `${estimated[i].toFixed(2).padStart(12)}  ${measured[i].toFixed(2).padStart(11)} ` +
          `(${lo.toFixed(2)}–${hi.toFixed(2)})`,
      );
    });
    const last = measured.length - 1;
    const ratios = timings.rounds.map((r) => r[0] / r[last]).sort((a, b) => a - b);
    const estSpeedup = estimated[0] / estimated[last];
    const realSpeedup = measured[0] / measured[last];
    const off = (estSpeedup / realSpeedup - 1) * 100;
    console.log(
      `speed-up of the final model: estimated ×${estSpeedup.toFixed(2)}, measured ` +
        `×${realSpeedup.toFixed(2)} (rounds ×${ratios[0].toFixed(2)}–×${
          ratios.at(-1)!.toFixed(2)
        }); estimate ${off >= 0 ? "+" : ""}${off.toFixed(1)}% off; R² of estimated against ` +
        `measured latency over the ${files.length} saved models ${r2.toFixed(3)}`,
    );
    if (c === clock) primary = { off, r2, measured: realSpeedup };
    byClock[c] = {
      steps: files.map((_, i) => ({
        estimated: estimated[i],
        measured: measured[i],
        rounds: timings.rounds.map((r) => r[i]),
      })),
      speedup: {
        estimated: estSpeedup,
        measured: realSpeedup,
        low: ratios[0],
        high: ratios.at(-1),
      },
      estimateOffPercent: off,
      r2,
    };
  }
  const attention = result.report.blocks.filter((b) => b.kind === "attention");
  const mlp = result.report.blocks.filter((b) => b.kind === "mlp");
  const pruned = attention.filter((b) =>
    b.kind === "attention" &&
    (b.headDim.after < b.headDim.before || b.heads.after < b.heads.before)
  ).length;
  const channels = mlp.map((b) => b.kind === "mlp" ? b.channels.after : 0);
  const floor = keptFloor(
    "channels",
    mlp[0].kind === "mlp" ? mlp[0].channels.before : 0,
    minKeep,
    roundTo,
  );
  const emptied = channels.some((c) => c < floor) ||
    attention.some((b) =>
      b.kind === "attention" && (b.heads.after < 1 || b.headDim.after < roundTo)
    );
  console.log(
    `\nthe tool's own check (${clock} clock): ×${check.speedup.toFixed(2)} (rounds ` +
      `×${check.low.toFixed(2)}–×${check.high.toFixed(2)}, ${check.rounds} interleaved), ` +
      `${result.target.met ? "met" : "not met"}` +
      `${check.corrections ? `, after ${check.corrections} correction(s) of the last step` : ""}`,
  );
  console.log(
    `attention pruned in ${pruned} of ${attention.length} blocks; MLP channels kept ` +
      `${Math.min(...channels)}…${Math.max(...channels)} (floor ${floor}); ` +
      `${emptied ? "a block was emptied" : "no block emptied"}; ` +
      `${((performance.now() - started) / 1000).toFixed(0)} s; load average ${load()}`,
  );
  console.log(
    result.report.blocks.map((b) =>
      b.kind === "attention"
        ? `H${b.heads.after}×${b.headDim.after}`
        : b.kind === "mlp"
        ? `MLP ${b.channels.after}`
        : `EMB ${b.channels.after}`
    ).join(", "),
  );
  for (const w of result.target.warnings ?? []) console.log(`warning: ${w}`);
  results.push({
    runtime,
    mode,
    threads,
    batch,
    clock,
    table: {
      shapes: t.ms.length,
      passes: t.passes,
      seconds: t.seconds,
      fromCache: !!t.fromCache,
      axes: t.axes,
      tiedV: !!t.tiedV,
      fitError: latency.fit.relativeError,
    },
    blockScale: latency.blockScale,
    fitted: latency.fitted,
    measured: byClock,
    primary,
    check,
    met: result.target.met,
    attentionPruned: pruned,
    mlpChannels: channels,
    emptied,
    warnings: result.target.warnings ?? [],
    load: Deno.loadavg(),
  });
}
if (args.json) await Deno.writeTextFile(args.json, JSON.stringify(results, null, 2) + "\n");
core.dispose();
