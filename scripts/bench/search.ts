/**
 * The automatic choice of criterion, compensation and allocation (the `search` option, on by
 * default on the command line with calibration data) on the trained Fashion-MNIST ViT, pruned
 * to 50% and 30% of its MACs (head dims and MLP channels: `--target-macs N --prune-head-dims`)
 * with 512 training images as calibration data, beside:
 * - the single run of the defaults (`--no-search`: l2, no compensation, global ranking, 4 steps);
 * - a grid of single runs on all 512 images (every criterion × compensation with the global
 *   ranking, every criterion with reweighting under FLAP's ranking; one step, as the search's
 *   candidates take, and the search's candidates in 4 steps), whose "best" row is picked on a
 *   validation split of the TRAINING data (images 50 000–54 999 with their labels), never on
 *   the test set; the 10 000 test images only report.
 * Cost: the search against one data-aware run on the same 512 images (taylor + reweight, the
 * default 4 steps and 1 step), timed in turn, `--rounds` times.
 *
 *   deno run -A scripts/bench/search.ts [--data DIR] [--rounds N] [--json OUT]
 */
import { parseArgs } from "node:util";
import type { RunOptions } from "../../src/prune.ts";
import { pruneToTarget } from "../../src/target.ts";
import { decodeModel, encodeModel } from "../../src/onnx/model_io.ts";
import { createCore } from "../../src/core/mod.ts";
import { createSession, loadOrt, type OrtTensor } from "../../src/runtime/ort.ts";

const args = parseArgs({
  options: {
    data: { type: "string", default: "/usr/share/datasets/fashion-mnist" },
    rounds: { type: "string", default: "2" },
    targets: { type: "string", default: "0.5,0.3" },
    json: { type: "string" },
  },
}).values;

async function idx(name: string): Promise<Uint8Array> {
  const file = await Deno.open(`${args.data}/${name}`);
  const stream = file.readable.pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
const [trainImages, trainLabels, testImages, testLabels] = await Promise.all([
  idx("train-images-idx3-ubyte.gz"),
  idx("train-labels-idx1-ubyte.gz"),
  idx("t10k-images-idx3-ubyte.gz"),
  idx("t10k-labels-idx1-ubyte.gz"),
]);
const PX = 784;
const normalise = (bytes: Uint8Array) => Float32Array.from(bytes, (p) => (p / 255 - 0.286) / 0.353);
const ort = await loadOrt();
const core = await createCore({ backend: "cpu" });
const MODEL = await Deno.readFile(new URL("../../tests/fixtures/fmnist_vit.onnx", import.meta.url));

function batches(images: Uint8Array, from: number, count: number, size: number) {
  const out: Record<string, OrtTensor>[] = [];
  for (let s = from; s < from + count; s += size) {
    const e = Math.min(from + count, s + size);
    const x = normalise(images.subarray(16 + s * PX, 16 + e * PX));
    out.push({ input: new ort.Tensor("float32", x, [e - s, 1, 28, 28]) });
  }
  return out;
}
const calibration = batches(trainImages, 0, 512, 64);
const VALIDATION = { from: 50000, count: 5000 };
const validation = batches(trainImages, VALIDATION.from, VALIDATION.count, 500);
const test = batches(testImages, 0, 10000, 500);

async function accuracy(
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
      if (best === labels[8 + first + k]) ok++;
    }
  }
  await session.release();
  return ok / k;
}

interface Row {
  target: number;
  kind: "default" | "search" | "grid";
  criterion?: string;
  compensation?: string;
  allocation?: string;
  steps?: number;
  macs: number;
  validation: number;
  test: number;
  seconds: number;
  search?: unknown;
}

async function run(target: number, steps: number | undefined, options: RunOptions) {
  const model = decodeModel(MODEL);
  const start = performance.now();
  const result = await pruneToTarget(model, { macs: target, ...(steps ? { steps } : {}) }, {
    pruneHeadDims: true,
    core,
    calibration,
    ...options,
  });
  const seconds = (performance.now() - start) / 1000;
  const bytes = encodeModel(result.model);
  return {
    report: result.report,
    seconds,
    macs: result.report.macs.after / result.report.macs.before,
    validation: await accuracy(bytes, validation, trainLabels, VALIDATION.from),
    test: await accuracy(bytes, test, testLabels, 0),
  };
}

const pc = (x: number) => `${(x * 100).toFixed(2)}%`;
const rows: Row[] = [];
const CRITERIA = ["l2", "l1", "wanda", "flap", "apma", "taylor", "fisher", "michel"] as const;
const targets = args.targets!.split(",").map(Number);
for (const target of targets) {
  const d = await run(target, undefined, { search: false });
  rows.push({ target, kind: "default", steps: 4, ...d, report: undefined } as Row);
  console.log(
    `${target * 100}% defaults, no search: MACs ${pc(d.macs)} val ${pc(d.validation)} test ${
      pc(d.test)
    } (${d.seconds.toFixed(1)} s)`,
  );
  const s = await run(target, undefined, { search: true });
  const search = s.report.search!;
  const c = search.candidates[search.chosen];
  rows.push({
    target,
    kind: "search",
    criterion: c.criterion,
    compensation: c.compensation,
    allocation: c.allocation,
    steps: search.steps,
    macs: s.macs,
    validation: s.validation,
    test: s.test,
    seconds: s.seconds,
    search,
  });
  console.log(
    `${target * 100}% search: chose ${c.criterion} ${c.compensation} ${c.allocation} ` +
      `MACs ${pc(s.macs)} val ${pc(s.validation)} test ${pc(s.test)} (${s.seconds.toFixed(1)} s)`,
  );
  const grid: [string, string, string, number][] = [
    ...CRITERIA.flatMap((k) =>
      (["none", "bias", "reweight"] as const).map((m) =>
        [k, m, "global", 1] as [
          string,
          string,
          string,
          number,
        ]
      )
    ),
    ...CRITERIA.map((k) => [k, "reweight", "flap", 1] as [string, string, string, number]),
    ...search.candidates.map((c) =>
      [c.criterion, c.compensation, c.allocation, 4] as [string, string, string, number]
    ),
  ];
  for (const [criterion, compensation, allocation, steps] of grid) {
    const g = await run(target, steps, {
      criterion,
      compensation,
      allocation,
    } as RunOptions);
    rows.push({
      target,
      kind: "grid",
      criterion,
      compensation,
      allocation,
      steps,
      macs: g.macs,
      validation: g.validation,
      test: g.test,
      seconds: g.seconds,
    });
    console.log(
      `  ${criterion.padEnd(6)} ${compensation.padEnd(8)} ${allocation.padEnd(6)} ${steps} ` +
        `step${steps > 1 ? "s" : " "}  MACs ${pc(g.macs)} val ${pc(g.validation)} test ${
          pc(g.test)
        } (${g.seconds.toFixed(1)} s)`,
    );
  }
}

// Cost: the search against one data-aware run on the same samples, in turn.
const timing: Record<string, number[]> = { search: [], single4: [], single1: [] };
for (let r = 0; r < Number(args.rounds); r++) {
  for (const target of targets) {
    timing.search.push((await run(target, undefined, { search: true })).seconds);
    const one = { criterion: "taylor", compensation: "reweight" } as RunOptions;
    timing.single4.push((await run(target, undefined, one)).seconds);
    timing.single1.push((await run(target, 1, one)).seconds);
  }
}
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

console.log("\nper MAC target (best of the grid picked on training-data validation accuracy):");
for (const target of targets) {
  const of = rows.filter((r) => r.target === target);
  const d = of.find((r) => r.kind === "default")!, s = of.find((r) => r.kind === "search")!;
  const grid = of.filter((r) => r.kind === "grid");
  const best = grid.reduce((a, b) => b.validation > a.validation ? b : a);
  const oracle = grid.reduce((a, b) => b.test > a.test ? b : a);
  console.log(
    `  ${target * 100}%: defaults ${pc(d.test)}; automatic ${pc(s.test)} (${s.criterion}, ` +
      `${s.compensation}, ${s.allocation}); grid best by validation ${pc(best.test)} ` +
      `(${best.criterion}, ${best.compensation}, ${best.allocation}, ${best.steps} step(s)); ` +
      `grid best by test (for reference only) ${pc(oracle.test)}`,
  );
}
console.log(
  `cost over ${args.rounds} round(s): search ${sum(timing.search).toFixed(1)} s, taylor + ` +
    `reweight 4 steps ${sum(timing.single4).toFixed(1)} s (×${
      (sum(timing.search) / sum(timing.single4)).toFixed(2)
    }), 1 step ${sum(timing.single1).toFixed(1)} s (×${
      (sum(timing.search) / sum(timing.single1)).toFixed(2)
    })`,
);
if (args.json) {
  await Deno.writeTextFile(
    args.json,
    JSON.stringify({ validation: VALIDATION, rows, timing }, null, 2) + "\n",
  );
}
