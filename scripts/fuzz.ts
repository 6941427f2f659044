/**
 * Fuzzes the ONNX reader and the pruner with mutated and truncated models: every input must end
 * in a pruned model that onnxruntime loads and runs, or in a PruneError (a clear message) —
 * never another exception, a hang, or an output onnxruntime rejects.
 *
 *   deno run -A scripts/fuzz.ts [--seconds 60] [--seed 1] [--model tests/fixtures/timm_vit.onnx]
 *
 * Prints what happened to how many inputs; a finding prints its seed and case number, which
 * `--seed S --only N` replays. Exit code 1 on a finding.
 */
import { parseArgs } from "node:util";
import { fuzzCase, type FuzzOutcome } from "../tests/fuzz_cases.ts";

const args = parseArgs({
  options: {
    seconds: { type: "string", default: "60" },
    seed: { type: "string", default: "1" },
    model: { type: "string", default: "tests/fixtures/timm_vit.onnx" },
    only: { type: "string" },
  },
}).values;
const bytes = await Deno.readFile(args.model!);
const seed = Number(args.seed);
const deadline = performance.now() + Number(args.seconds) * 1000;
const counts: Record<FuzzOutcome["kind"], number> = { pruned: 0, refused: 0, finding: 0 };
const reasons = new Map<string, number>();
let slowest = 0, slowestCase = 0;
for (let n = args.only ? Number(args.only) : 0; performance.now() < deadline; n++) {
  const t = performance.now();
  const outcome = await fuzzCase(bytes, seed, n);
  if (performance.now() - t > slowest) [slowest, slowestCase] = [performance.now() - t, n];
  counts[outcome.kind]++;
  if (outcome.kind === "refused") {
    const key = outcome.message.replace(/["'][^"']*["']/g, "…").replace(/\d+/g, "N").slice(0, 70);
    reasons.set(key, (reasons.get(key) ?? 0) + 1);
  }
  if (outcome.kind === "finding") {
    console.log(`finding: --seed ${seed} --only ${n} (${outcome.mutation}): ${outcome.message}`);
  }
  if (args.only) break;
}
const total = counts.pruned + counts.refused + counts.finding;
console.log(
  `${total} inputs in ${args.seconds} s: ${counts.pruned} pruned (each run in onnxruntime), ` +
    `${counts.refused} refused with a PruneError, ${counts.finding} findings; ` +
    `slowest case ${slowest.toFixed(0)} ms (--only ${slowestCase})`,
);
for (const [why, n] of [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
  console.log(`  ${String(n).padStart(5)}  ${why}`);
}
Deno.exit(counts.finding ? 1 : 0);
