/**
 * Fuzzes the ONNX reader and the pruner with mutated and truncated models: every input must end
 * in a pruned model that onnxruntime loads and runs, or in a PruneError (a clear message) —
 * never another exception, a hang, a crash, or an output onnxruntime rejects.
 *
 *   deno run -A scripts/fuzz.ts [--seconds 60] [--seed 1] [--model tests/fixtures/timm_vit.onnx]
 *   deno run -A scripts/fuzz.ts --strategy targeted [--seconds 1800] [--seed 1] [--model F]…
 *
 * Two strategies. "mutate" (the default): truncation, random bit flips and one structural change,
 * in this process. "targeted": bit flips and edge values in the varints of the wire format,
 * tensor data type swaps, shape-constant and integer-attribute edits, removed or bypassed nodes,
 * over seed exports of every class (tests/fuzz/seeds.ts, or the --model files given), each
 * case pruned in one of the modes and its output run in onnxruntime, in a child process under a
 * watchdog (--case-seconds, --memory-gib) that turns a hang, a memory overrun or a crash into a
 * finding when it happens again in a fresh child. Case n uses seed file n mod (number of files).
 *
 * Prints what happened to how many inputs; a finding prints the command that replays it.
 * Exit code 1 on a finding.
 */
import { parseArgs } from "node:util";
import { fuzzCase, type FuzzOutcome } from "../tests/fuzz_cases.ts";
import { SEEDS } from "../tests/fuzz/seeds.ts";
import { Watchdog, type WatchedOutcome } from "../tests/fuzz/watchdog.ts";

const args = parseArgs({
  options: {
    strategy: { type: "string", default: "mutate" },
    seconds: { type: "string", default: "60" },
    seed: { type: "string", default: "1" },
    model: { type: "string", multiple: true },
    only: { type: "string" },
    first: { type: "string", default: "0" },
    "case-seconds": { type: "string", default: "20" },
    "memory-gib": { type: "string", default: "3" },
  },
}).values;
const seed = Number(args.seed);
const seconds = Number(args.seconds);
const deadline = performance.now() + seconds * 1000;
const started = performance.now();
const reasons = new Map<string, number>();
const reason = (message: string) => {
  const key = message.replace(/["'][^"']*["']/g, "…").replace(/\d+/g, "N").slice(0, 70);
  reasons.set(key, (reasons.get(key) ?? 0) + 1);
};
const topReasons = () => {
  for (const [why, n] of [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
    console.log(`  ${String(n).padStart(7)}  ${why}`);
  }
};

if (args.strategy === "mutate") {
  const bytes = await Deno.readFile(args.model?.[0] ?? "tests/fixtures/timm_vit.onnx");
  const counts: Record<FuzzOutcome["kind"], number> = { pruned: 0, refused: 0, finding: 0 };
  let slowest = 0, slowestCase = 0;
  for (let n = args.only ? Number(args.only) : 0; performance.now() < deadline; n++) {
    const t = performance.now();
    const outcome = await fuzzCase(bytes, seed, n);
    if (performance.now() - t > slowest) [slowest, slowestCase] = [performance.now() - t, n];
    counts[outcome.kind]++;
    if (outcome.kind === "refused") reason(outcome.message);
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
  topReasons();
  Deno.exit(counts.finding ? 1 : 0);
}

if (args.strategy !== "targeted") {
  console.error(`--strategy must be "mutate" or "targeted", got "${args.strategy}"`);
  Deno.exit(2);
}

const files = args.model?.length ? args.model : [...SEEDS];
const watchdog = new Watchdog({
  caseSeconds: Number(args["case-seconds"]),
  memoryBytes: Number(args["memory-gib"]) * 2 ** 30,
});
const counts = { pruned: 0, refused: 0, finding: 0, skipped: 0 };
let transient = 0;
const findings: string[] = [];
let slowest = { ms: 0, line: "" };
let lastReport = performance.now();
const replay = (file: string, n: number) =>
  `--strategy targeted --model ${file} --seed ${seed} --only ${n}`;
const summary = () => {
  const inputs = counts.pruned + counts.refused + counts.finding;
  const elapsed = (performance.now() - started) / 1000;
  return `${inputs} inputs in ${elapsed.toFixed(0)} s (${(inputs / elapsed).toFixed(1)}/s): ` +
    `${counts.pruned} pruned (each output run in onnxruntime), ${counts.refused} refused with a ` +
    `PruneError, ${counts.finding} findings (${counts.skipped} mutations changed nothing, not ` +
    `counted; ${transient} cases ended by the watchdog once but not when run again); slowest ` +
    `case ${slowest.ms.toFixed(0)} ms (${slowest.line})`;
};

const only = args.only !== undefined;
for (
  let n = only ? Number(args.only) : Number(args.first);
  only || performance.now() < deadline;
  n++
) {
  const file = files[n % files.length];
  const outcome: WatchedOutcome = await watchdog.run({ file, seed, n });
  counts[outcome.kind]++;
  if (outcome.ms > slowest.ms) slowest = { ms: outcome.ms, line: replay(file, n) };
  if (outcome.kind === "refused") reason(outcome.message!);
  if (outcome.transient) {
    transient++;
    console.log(`transient: ${replay(file, n)}: ${outcome.transient}; run again: ${outcome.kind}`);
  }
  if (outcome.kind === "finding" || only) {
    const line = `${outcome.kind}${outcome.watchdog ? ` (${outcome.watchdog})` : ""}: ` +
      `${replay(file, n)} [${outcome.mode}] ${outcome.mutation}: ${outcome.message ?? ""}`;
    if (outcome.kind === "finding") findings.push(line);
    console.log(line);
  }
  if (only) break;
  if (performance.now() - lastReport > 60_000) {
    lastReport = performance.now();
    console.log(`… ${summary()}; children started: ${watchdog.started}`);
  }
}
await watchdog.close();
console.log(summary());
topReasons();
Deno.exit(findings.length ? 1 : 0);
