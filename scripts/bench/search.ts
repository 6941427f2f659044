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
 * `--grid global` keeps only the 24 global-ranking one-step rows (drops the FLAP-ranking and the
 * 4-step rows); `--grid none` runs no grid.
 * Cost: the search against one data-aware run on the same 512 images (taylor + reweight, the
 * default 4 steps and 1 step), interleaved: each round times the three runs once per target, the
 * order rotating from round to round; medians over `--rounds` rounds (no accuracy is computed in
 * these runs). The load average is recorded before and after.
 *
 *   deno run -A scripts/bench/search.ts [--data DIR] [--targets 0.5,0.3] [--grid full|global|none]
 *     [--rounds N] [--cost-first] [--min-keep R] [--json OUT]
 *
 * `--min-keep R`: each block's floor under the target (`--min-keep`; default 0.125).
 *
 * With `--json` the file is rewritten after every run, so a stopped run keeps what it measured.
 */
import { parseArgs } from "node:util";
import type { RunOptions } from "../../src/prune.ts";
import { pruneToTarget } from "../../src/target.ts";
import { decodeModel, encodeModel } from "../../src/onnx/model_io.ts";
import { createCore } from "../../src/core/mod.ts";
import { imageBatches, readIdx, top1 } from "./fashion_mnist.ts";

const args = parseArgs({
  options: {
    data: { type: "string", default: "/usr/share/datasets/fashion-mnist" },
    rounds: { type: "string", default: "3" },
    targets: { type: "string", default: "0.5,0.3" },
    grid: { type: "string", default: "full" },
    "min-keep": { type: "string" },
    "cost-first": { type: "boolean", default: false },
    json: { type: "string" },
  },
}).values;
if (!["full", "global", "none"].includes(args.grid!)) {
  throw new Error(`--grid must be full, global or none, got "${args.grid}"`);
}

const [trainImages, trainLabels, testImages, testLabels] = await Promise.all([
  readIdx(args.data!, "train-images-idx3-ubyte.gz"),
  readIdx(args.data!, "train-labels-idx1-ubyte.gz"),
  readIdx(args.data!, "t10k-images-idx3-ubyte.gz"),
  readIdx(args.data!, "t10k-labels-idx1-ubyte.gz"),
]);
const core = await createCore({ backend: "cpu" });
const MODEL = await Deno.readFile(new URL("../../tests/fixtures/fmnist_vit.onnx", import.meta.url));

const calibration = await imageBatches(trainImages, 0, 512, 64);
/** Each block's floor under a target (the `minKeep` of `pruneToTarget`; its default unless given). */
const minKeep = args["min-keep"] === undefined ? undefined : Number(args["min-keep"]);
const VALIDATION = { from: 50000, count: 5000 };
const validation = await imageBatches(trainImages, VALIDATION.from, VALIDATION.count, 500);
const test = await imageBatches(testImages, 0, 10000, 500);

const accuracy = top1;

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

async function prune(target: number, steps: number | undefined, options: RunOptions) {
  const model = decodeModel(MODEL);
  const start = performance.now();
  const goal = {
    macs: target,
    ...(steps ? { steps } : {}),
    ...(minKeep !== undefined ? { minKeep } : {}),
  };
  const result = await pruneToTarget(model, goal, {
    pruneHeadDims: true,
    core,
    calibration,
    ...options,
  });
  return { result, seconds: (performance.now() - start) / 1000 };
}

async function run(target: number, steps: number | undefined, options: RunOptions) {
  const { result, seconds } = await prune(target, steps, options);
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
const rounds = Number(args.rounds);
const load = () => Deno.loadavg().map((x) => Number(x.toFixed(2)));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

type Kind = "search" | "single4" | "single1";
interface Cost {
  rounds: number;
  loadBefore: number[];
  loadAfter?: number[];
  seconds: Record<string, Record<Kind, number[]>>;
}
const cost: Cost = { rounds, loadBefore: [], seconds: {} };

async function save() {
  if (!args.json) return;
  await Deno.writeTextFile(
    args.json,
    JSON.stringify({ validation: VALIDATION, grid: args.grid, minKeep, rows, cost }, null, 2) +
      "\n",
  );
}

// Cost: the search against one data-aware run on the same samples, interleaved: in each round
// every target gets the three runs once, the order rotating from round to round.
async function measureCost() {
  const one = { criterion: "taylor", compensation: "reweight" } as RunOptions;
  const runs: Record<Kind, (target: number) => Promise<number>> = {
    search: async (t) => (await prune(t, undefined, { search: true })).seconds,
    single4: async (t) => (await prune(t, undefined, one)).seconds,
    single1: async (t) => (await prune(t, 1, one)).seconds,
  };
  const kinds: Kind[] = ["search", "single4", "single1"];
  cost.loadBefore = load();
  for (const t of targets) cost.seconds[t] = { search: [], single4: [], single1: [] };
  for (let r = 0; r < rounds; r++) {
    for (const t of targets) {
      for (let k = 0; k < kinds.length; k++) {
        const kind = kinds[(k + r) % kinds.length];
        const seconds = await runs[kind](t);
        cost.seconds[t][kind].push(seconds);
        console.log(`cost round ${r + 1} ${t * 100}% ${kind}: ${seconds.toFixed(2)} s`);
        await save();
      }
    }
  }
  cost.loadAfter = load();
  await save();
}

if (args["cost-first"] && rounds > 0) await measureCost();

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
  await save();
  console.log(
    `${target * 100}% search: chose ${c.criterion} ${c.compensation} ${c.allocation}` +
      `${c.minKeep === undefined ? "" : ` floor ${c.minKeep}`} ` +
      `MACs ${pc(s.macs)} val ${pc(s.validation)} test ${pc(s.test)} (${s.seconds.toFixed(1)} s)`,
  );
  for (const k of search.candidates) {
    console.log(
      `  candidate ${k.criterion} ${k.compensation} ${k.allocation}` +
        `${k.minKeep === undefined ? "" : ` floor ${k.minKeep}`}: held-out KL ${
          k.fidelity ? k.fidelity.kl.toFixed(4) : k.error
        } (${k.seconds.toFixed(1)} s)`,
    );
  }
  type Setting = [string, string, string, number];
  const grid: Setting[] = args.grid === "none" ? [] : [
    ...CRITERIA.flatMap((k) =>
      (["none", "bias", "reweight"] as const).map((m): Setting => [k, m, "global", 1])
    ),
    ...(args.grid === "full"
      ? [
        ...CRITERIA.map((k): Setting => [k, "reweight", "flap", 1]),
        ...search.candidates.map((c): Setting => [c.criterion, c.compensation, c.allocation, 4]),
      ]
      : []),
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
    await save();
    console.log(
      `  ${criterion.padEnd(6)} ${compensation.padEnd(8)} ${allocation.padEnd(6)} ${steps} ` +
        `step${steps > 1 ? "s" : " "}  MACs ${pc(g.macs)} val ${pc(g.validation)} test ${
          pc(g.test)
        } (${g.seconds.toFixed(1)} s)`,
    );
  }
}

if (!args["cost-first"] && rounds > 0) await measureCost();

console.log("\nper MAC target (best of the grid picked on training-data validation accuracy):");
for (const target of targets) {
  const of = rows.filter((r) => r.target === target);
  const d = of.find((r) => r.kind === "default")!, s = of.find((r) => r.kind === "search")!;
  const grid = of.filter((r) => r.kind === "grid");
  let line =
    `  ${target * 100}%: defaults ${pc(d.test)}; automatic ${pc(s.test)} (${s.criterion}, ` +
    `${s.compensation}, ${s.allocation})`;
  if (grid.length) {
    const best = grid.reduce((a, b) => b.validation > a.validation ? b : a);
    const oracle = grid.reduce((a, b) => b.test > a.test ? b : a);
    line += `; grid best by validation ${pc(best.test)} (${best.criterion}, ` +
      `${best.compensation}, ${best.allocation}, ${best.steps} step(s), validation ` +
      `${pc(best.validation)}); grid best by test (for reference only) ${pc(oracle.test)}`;
  }
  console.log(line);
}
if (rounds > 0) {
  console.log(
    `\ncost, medians of ${rounds} interleaved round(s) (load average before ${
      cost.loadBefore.join(" / ")
    }, after ${cost.loadAfter!.join(" / ")}):`,
  );
  for (const t of targets) {
    const m = cost.seconds[t];
    const [s, s4, s1] = [median(m.search), median(m.single4), median(m.single1)];
    console.log(
      `  ${t * 100}%: search ${s.toFixed(2)} s; taylor + reweight 4 steps ${s4.toFixed(2)} s ` +
        `(×${(s / s4).toFixed(2)}), 1 step ${s1.toFixed(2)} s (×${(s / s1).toFixed(2)})`,
    );
  }
}
await save();
core.dispose();
