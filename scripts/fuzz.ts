/**
 * Fuzzes the ONNX reader and the pruner with mutated and truncated models: every input must end
 * in a pruned model that onnxruntime loads and runs, or in a PruneError (a clear message) —
 * never another exception, a hang, a crash, or an output onnxruntime rejects.
 *
 *   deno run -A scripts/fuzz.ts [--seconds 60] [--seed 1] [--model tests/fixtures/timm_vit.onnx]…
 *   deno run -A scripts/fuzz.ts --strategy targeted [--seconds 1800] [--seed 1] [--model F]…
 *   deno run -A scripts/fuzz.ts --strategy targeted --seconds 3600 --state run.json  (resumable)
 *
 * Two strategies. "mutate" (the default): truncation, random bit flips and one structural change
 * (tests/fuzz_cases.ts), over timm_vit.onnx or the --model files given. "targeted": bit flips and
 * edge values in the varints of the wire format, tensor data type swaps, shape-constant and
 * integer-attribute edits, removed or bypassed nodes, over seed exports of every class
 * (tests/fuzz/seeds.ts, or the --model files given), each case pruned in one of the modes. Case n
 * uses model file n mod (number of files); every pruned output is run in onnxruntime.
 *
 * Each case runs in a child process under a watchdog (--case-seconds, --memory-gib) that turns a
 * hang, a memory overrun or a crash into a finding when it happens again in a fresh child.
 *
 * Prints what happened to how many inputs, a progress line every --report-seconds (with the case
 * to resume from), and the totals at the end or on SIGINT / SIGTERM: inputs, findings by kind
 * (not a PruneError, rejected by onnxruntime, hang, memory, crash), the slowest case. A finding
 * prints the command that replays it. With --state FILE the totals are kept in FILE after every
 * progress line, and a run started with the same FILE (same strategy, seed and models) goes on
 * from where it stopped, adding to them. Exit code 1 on a finding.
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
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
    "report-seconds": { type: "string", default: "60" },
    state: { type: "string" },
  },
}).values;
const strategy = args.strategy;
if (strategy !== "mutate" && strategy !== "targeted") {
  console.error(`--strategy must be "mutate" or "targeted", got "${strategy}"`);
  Deno.exit(2);
}
const seed = Number(args.seed);
const seconds = Number(args.seconds);
// Model files given on the command line are read from the working folder (seed files are
// relative to tests/fixtures).
const given = args.model ?? [];
const files = given.length
  ? given.map((f) => resolve(f))
  : strategy === "mutate"
  ? ["timm_vit.onnx"]
  : [...SEEDS];
const shown = given.length ? given : files;

/** What the totals count; a resumed run adds to them. */
interface Totals {
  strategy: string;
  seed: number;
  models: string[];
  /** The first case of the run, and the next one to run. */
  first: number;
  next: number;
  seconds: number;
  pruned: number;
  refused: number;
  /** Mutations that changed nothing, or that the encoder cannot write: not inputs. */
  skipped: number;
  findings: Record<string, number>;
  /** Cases the watchdog ended once but not when run again (a machine too busy). */
  transient: number;
  childrenStarted: number;
  slowest: { ms: number; line: string };
  /** Refusals by message, numbers and quoted names left out. */
  reasons: Record<string, number>;
  findingLines: string[];
}

const fresh = (): Totals => ({
  strategy,
  seed,
  models: shown,
  first: Number(args.first),
  next: Number(args.first),
  seconds: 0,
  pruned: 0,
  refused: 0,
  skipped: 0,
  findings: {},
  transient: 0,
  childrenStarted: 0,
  slowest: { ms: 0, line: "" },
  reasons: {},
  findingLines: [],
});

const only = args.only !== undefined;
let totals = fresh();
if (only) totals.first = totals.next = Number(args.only);
else if (args.state) {
  let text: string | undefined;
  try {
    text = await Deno.readTextFile(args.state);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (text !== undefined) {
    const saved = JSON.parse(text) as Totals;
    if (
      saved.strategy !== strategy || saved.seed !== seed ||
      saved.models.join("\n") !== shown.join("\n")
    ) {
      console.error(
        `${args.state} is the state of another run (${saved.strategy}, seed ${saved.seed}, ` +
          `${saved.models.length} models); use another --state file`,
      );
      Deno.exit(2);
    }
    totals = saved;
    console.log(`resumed from ${args.state} at case ${saved.next}`);
  }
}

/** The kind of a finding: what a summary counts it under. */
function findingKind(o: WatchedOutcome): string {
  if (o.watchdog) return o.watchdog;
  if (/onnxruntime/.test(o.message ?? "")) return "rejected by onnxruntime";
  return "not a PruneError";
}

const reason = (message: string) => {
  const key = message.replace(/["'][^"']*["']/g, "…").replace(/\d+/g, "N").slice(0, 70);
  totals.reasons[key] = (totals.reasons[key] ?? 0) + 1;
};

const replay = (file: string, n: number) =>
  `--strategy ${strategy} --model ${file} --seed ${seed} --only ${n}`;

const startedAt = performance.now();
const baseSeconds = totals.seconds;
const elapsed = () => baseSeconds + (performance.now() - startedAt) / 1000;

const summary = () => {
  const inputs = totals.pruned + totals.refused + findingCount();
  const s = elapsed();
  const kinds = Object.entries(totals.findings).map(([k, v]) => `${v} ${k}`).join(", ");
  return `${inputs} inputs in ${s.toFixed(0)} s (${(inputs / s).toFixed(1)}/s), cases ` +
    `${totals.first}–${totals.next - 1}: ${totals.pruned} pruned (each output run ` +
    `in onnxruntime), ${totals.refused} refused with a PruneError, ${findingCount()} findings` +
    `${kinds ? ` (${kinds})` : ""}; ${totals.skipped} mutations changed nothing (not counted); ` +
    `${totals.transient} cases ended by the watchdog once but not when run again; ` +
    `${totals.childrenStarted} children started; slowest case ${totals.slowest.ms.toFixed(0)} ms ` +
    `(${totals.slowest.line})`;
};
const findingCount = () => Object.values(totals.findings).reduce((a, b) => a + b, 0);

const topReasons = () => {
  const sorted = Object.entries(totals.reasons).sort((a, b) => b[1] - a[1]);
  for (const [why, n] of sorted.slice(0, 8)) console.log(`  ${String(n).padStart(7)}  ${why}`);
};

async function save() {
  if (!args.state) return;
  totals.seconds = elapsed();
  const tmp = `${args.state}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(totals, null, 1));
  await Deno.rename(tmp, args.state);
}

const watchdog = new Watchdog({
  caseSeconds: Number(args["case-seconds"]),
  memoryBytes: Number(args["memory-gib"]) * 2 ** 30,
});
const childrenBefore = totals.childrenStarted;
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    stopping = true;
  });
}

const deadline = performance.now() + seconds * 1000;
let lastReport = performance.now();
const reportMs = Number(args["report-seconds"]) * 1000;
for (
  let n = only ? Number(args.only) : totals.next;
  only || (performance.now() < deadline && !stopping);
  n++
) {
  const at = files[n % files.length], file = shown[n % shown.length];
  const outcome = await watchdog.run({ file: at, seed, n, strategy });
  // A signal from the terminal reaches the child too: what it ended is not counted.
  if (stopping && outcome.watchdog) break;
  totals.childrenStarted = childrenBefore + watchdog.started;
  if (outcome.kind === "finding") {
    const kind = findingKind(outcome);
    totals.findings[kind] = (totals.findings[kind] ?? 0) + 1;
  } else totals[outcome.kind]++;
  if (outcome.ms > totals.slowest.ms) totals.slowest = { ms: outcome.ms, line: replay(file, n) };
  if (outcome.kind === "refused") reason(outcome.message!);
  if (outcome.transient) {
    totals.transient++;
    console.log(`transient: ${replay(file, n)}: ${outcome.transient}; run again: ${outcome.kind}`);
  }
  if (outcome.kind === "finding" || only) {
    const line = `${outcome.kind}${outcome.watchdog ? ` (${outcome.watchdog})` : ""}: ` +
      `${replay(file, n)} [${outcome.mode}] ${outcome.mutation}: ${outcome.message ?? ""}`;
    if (outcome.kind === "finding") totals.findingLines.push(line);
    console.log(line);
  }
  totals.next = n + 1;
  if (only) break;
  if (performance.now() - lastReport > reportMs) {
    lastReport = performance.now();
    await save();
    console.log(`… ${summary()}`);
  }
}
await watchdog.close();
if (!only) await save();
console.log(summary());
topReasons();
Deno.exit(totals.findingLines.length ? 1 : 0);
