/**
 * Accuracy without retraining: the trained Fashion-MNIST ViT pruned to 70%, 50% and 30% of its
 * MACs, for every criterion with and without compensation, calibrated on 512 training images,
 * scored on the 10 000 test images. Four allocations: "uniform" (the same ratio r for every head's
 * dims and every MLP), "mlp-heavy" (MLP hidden channels r, head dims r/3), and the budget of
 * "uniform" spent across blocks by global ranking: "global" (scores as they are) and "flap"
 * (scores standardised per kind, FLAP's adaptive structure).
 * Torch-Pruning's numbers for the same model (no finetuning) come from
 * `bench/torch_pruning_accuracy.json` (scripts/anchor/accuracy_baseline.py) and are printed
 * side by side at the end.
 *
 *   deno run -A scripts/bench/accuracy.ts [--data DIR] [--json OUT]
 *
 * DIR holds the IDX files of Fashion-MNIST (Debian's dataset-fashion-mnist by default).
 */
import { parseArgs } from "node:util";
import { prune, type RunOptions } from "../../src/prune.ts";
import { createCore } from "../../src/core/mod.ts";
import { imageBatches, readIdx, top1 } from "./fashion_mnist.ts";

const args = parseArgs({
  options: {
    data: { type: "string", default: "/usr/share/datasets/fashion-mnist" },
    json: { type: "string" },
  },
}).values;

const [trainImages, testImages, testLabels] = await Promise.all([
  readIdx(args.data!, "train-images-idx3-ubyte.gz"),
  readIdx(args.data!, "t10k-images-idx3-ubyte.gz"),
  readIdx(args.data!, "t10k-labels-idx1-ubyte.gz"),
]);
const core = await createCore({ backend: "cpu" });
const model = await Deno.readFile(new URL("../../tests/fixtures/fmnist_vit.onnx", import.meta.url));

const calibration = await imageBatches(trainImages, 0, 512, 64);
const test = await imageBatches(testImages, 0, 10000, 500);

const accuracy = (bytes: Uint8Array) => top1(bytes, test, testLabels, 0);

type Allocation = "uniform" | "mlp-heavy" | "global" | "flap";

/** The ratio r whose pruned model has the target share of MACs. */
async function ratioFor(target: number, allocation: Allocation): Promise<number> {
  let lo = 0, hi = 0.95;
  for (let i = 0; i < 12; i++) {
    const r = (lo + hi) / 2;
    const { report } = await prune(model, settings(r, allocation));
    if (report.macs.after / report.macs.before > target) lo = r;
    else hi = r;
  }
  return (lo + hi) / 2;
}

function settings(r: number, allocation: Allocation): RunOptions {
  const dims = allocation === "mlp-heavy" ? r / 3 : r;
  const spread = allocation === "global" || allocation === "flap" ? { allocation } : {};
  return { pruneHeadDims: true, headPruningRatio: dims, pruningRatio: r, core, ...spread };
}

const CRITERIA = ["l2", "l1", "wanda", "flap", "apma", "taylor", "fisher", "michel"] as const;
const rows: Record<string, unknown>[] = [];
const unpruned = await accuracy(model);
console.log(`unpruned: ${(unpruned * 100).toFixed(2)}% on the 10 000 test images`);
for (const allocation of ["uniform", "mlp-heavy", "global", "flap"] as const) {
  for (const target of [0.7, 0.5, 0.3]) {
    const r = await ratioFor(target, allocation);
    for (const criterion of CRITERIA) {
      for (const compensation of ["none", "bias", "reweight"] as const) {
        const calibrated = criterion !== "l1" && criterion !== "l2" || compensation !== "none";
        const start = performance.now();
        const { bytes, report } = await prune(model, {
          ...settings(r, allocation),
          criterion,
          compensation,
          ...(calibrated ? { calibration } : {}),
        });
        const seconds = (performance.now() - start) / 1000;
        const acc = await accuracy(bytes);
        const share = report.macs.after / report.macs.before;
        rows.push({
          allocation,
          target,
          ratio: r,
          criterion,
          compensation,
          macs: share,
          accuracy: acc,
          seconds,
        });
        console.log(
          `${allocation.padEnd(9)} MACs ${(share * 100).toFixed(1)}% (r=${r.toFixed(3)})  ` +
            `${criterion.padEnd(6)} ` +
            `${compensation.padEnd(8)} ${(acc * 100).toFixed(2)}%  (${seconds.toFixed(1)} s)`,
        );
      }
    }
  }
}
// Side by side with Torch-Pruning on the same PyTorch model (best variant per criterion).
const baseline = await Deno.readTextFile(
  new URL("../../bench/torch_pruning_accuracy.json", import.meta.url),
).then(JSON.parse).catch(() => undefined);
console.log("\nbest per MAC target, ours against Torch-Pruning 1.6.1 (no finetuning):");
for (const target of [0.7, 0.5, 0.3]) {
  const ours = rows.filter((r) => r.target === target)
    .reduce((a, b) => (b.accuracy as number) > (a.accuracy as number) ? b : a);
  const line = [
    `${target * 100}%: ours ${((ours.accuracy as number) * 100).toFixed(2)}% ` +
    `(${ours.allocation}, ${ours.criterion}, ${ours.compensation}, MACs ` +
    `${((ours.macs as number) * 100).toFixed(1)}%)`,
  ];
  for (const entry of baseline?.results ?? []) {
    if (entry.target_fraction !== target) continue;
    const variants = Object.entries(entry.variants) as [string, { acc_10k: number }][];
    const [name, best] = variants.reduce((a, b) => b[1].acc_10k > a[1].acc_10k ? b : a);
    line.push(`Torch-Pruning ${entry.criterion} ${(best.acc_10k * 100).toFixed(2)}% (${name})`);
  }
  console.log("  " + line.join("; "));
}
if (args.json) {
  await Deno.writeTextFile(args.json, JSON.stringify({ unpruned, rows }, null, 2) + "\n");
}
