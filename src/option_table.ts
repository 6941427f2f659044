/**
 * Every option of a pruning run, described once. The command line's `parseArgs` options and
 * `--help`, the service's query parameters (`/prune?prune-num-heads&head-pruning-ratio=0.5`) and
 * the page's controls are all derived from {@link OPTIONS}; the values they collect are checked
 * by one validator (`option_values.ts`), so each front door accepts and refuses the same things
 * with the same messages.
 *
 * @module
 */
import type { PruneOptions } from "./options.ts";
import type { LatencyClock, LatencyRuntime } from "./latency/runtime.ts";

/** Where an option can be given: the command line, the HTTP service, the browser page. */
export type Surface = "cli" | "service" | "page";

/**
 * How an option's value is read: `flag` (no value), `ratio` (0 ≤ R < 1), `int` (positive
 * integer), `number` (positive), `amount` (a count such as 25M or a share such as 50%),
 * `choice` (one of `choices`), `name` (a node or tensor name), `pair-int` / `pair-ratio`
 * (`NAME=N` / `NAME=R`), `path` (a file or folder).
 */
export type OptionKind =
  | "flag"
  | "ratio"
  | "int"
  | "number"
  | "amount"
  | "choice"
  | "name"
  | "pair-int"
  | "pair-ratio"
  | "path";

/** Which part of a run an option is about (the page groups its controls by it). */
export type OptionSection = "mlp" | "heads" | "target" | "names" | "run" | "data" | "output";

/** One option. */
export interface OptionSpec {
  /** The command line's spelling without `--`; also the query parameter's name. */
  readonly name: string;
  readonly short?: string;
  readonly kind: OptionKind;
  /** May be given more than once (values collected in order). */
  readonly multiple?: boolean;
  readonly choices?: readonly string[];
  /** Choices offered where not every choice works (data-aware criteria need files). */
  readonly surfaceChoices?: Partial<Record<Surface, readonly string[]>>;
  /** Placeholder of the value in `--help` (default: the choices joined by `|`). */
  readonly arg?: string;
  /** A short description: the page's label, the service's error messages. */
  readonly label: string;
  /** The lines of `--help` (empty: described in another option's lines). */
  readonly help: readonly string[];
  /** `--help` shows this option on one line with the named one: `--a R, --b R`. */
  readonly helpWith?: string;
  readonly section: OptionSection;
  readonly surfaces: readonly Surface[];
  /** Page: the value a control starts with. */
  readonly initial?: string | boolean;
  /** A flag that cannot be given with this one (the page unchecks it). */
  readonly excludes?: string;
}

const ALL: readonly Surface[] = ["cli", "service", "page"];
const CLI: readonly Surface[] = ["cli"];

const CRITERIA = [
  "l1",
  "l2",
  "wanda",
  "flap",
  "apma",
  "taylor",
  "fisher",
  "michel",
] as const satisfies readonly NonNullable<PruneOptions["criterion"]>[];
const ALLOCATIONS = [
  "local",
  "global",
  "flap",
  "isomorphic",
] as const satisfies readonly NonNullable<
  PruneOptions["allocation"]
>[];
const GQA_POLICIES = ["query-heads", "kv-groups"] as const satisfies readonly NonNullable<
  PruneOptions["gqaPolicy"]
>[];
const BACKENDS = ["auto", "gpu", "cpu"] as const satisfies readonly NonNullable<
  PruneOptions["backend"]
>[];
const RUNTIMES = ["cpu", "wasm", "webgpu"] as const satisfies readonly LatencyRuntime[];
const CLOCKS = ["wall", "cpu"] as const satisfies readonly LatencyClock[];

/** The options, in the order `--help` lists them. */
export const OPTIONS = [
  {
    name: "output",
    short: "o",
    kind: "path",
    arg: "PATH",
    label: "output model",
    help: ["output model (default: <input>.pruned.onnx)"],
    section: "output",
    surfaces: CLI,
  },
  {
    name: "pruning-ratio",
    kind: "ratio",
    arg: "R",
    label: "MLP channels to remove",
    help: ["fraction of MLP hidden channels to remove, 0 ≤ R < 1 (default 0)"],
    section: "mlp",
    surfaces: ALL,
    initial: "0.3",
  },
  {
    name: "head-pruning-ratio",
    kind: "ratio",
    arg: "R",
    label: "heads or head dims to remove",
    help: ["fraction of heads / head dims to remove (default: --pruning-ratio)"],
    section: "heads",
    surfaces: ALL,
    initial: "0.5",
  },
  {
    name: "embedding-pruning-ratio",
    kind: "ratio",
    arg: "R",
    label: "embedding width to remove",
    help: ["fraction of the embedding (residual) width to remove (default 0)"],
    section: "mlp",
    surfaces: ALL,
  },
  {
    name: "qk-pruning-ratio",
    kind: "ratio",
    arg: "R",
    label: "Q/K dims per head to remove",
    help: [
      "with --prune-head-dims: prune each head's Q/K dims and V dims",
      "separately (NViT); unset, Q, K and V lose the same dims",
    ],
    helpWith: "v-pruning-ratio",
    section: "heads",
    surfaces: ALL,
  },
  {
    name: "v-pruning-ratio",
    kind: "ratio",
    arg: "R",
    label: "V dims per head to remove",
    help: [],
    section: "heads",
    surfaces: ALL,
  },
  {
    name: "prune-num-heads",
    kind: "flag",
    label: "remove whole heads",
    help: ["remove whole attention heads"],
    excludes: "prune-head-dims",
    section: "heads",
    surfaces: ALL,
    initial: true,
  },
  {
    name: "prune-head-dims",
    kind: "flag",
    label: "remove dims of every head",
    help: ["remove the same number of dims from every head"],
    excludes: "prune-num-heads",
    section: "heads",
    surfaces: ALL,
  },
  {
    name: "round-to",
    kind: "int",
    arg: "N",
    label: "round kept counts to a multiple of",
    help: ["round kept channel counts to a multiple of N"],
    section: "mlp",
    surfaces: ALL,
  },
  {
    name: "ignore",
    kind: "name",
    multiple: true,
    arg: "NAME",
    label: "leave these nodes alone",
    help: ["node/initializer name or prefix to leave alone (repeatable)"],
    section: "names",
    surfaces: ALL,
  },
  {
    name: "keep-heads",
    kind: "name",
    multiple: true,
    arg: "NODE",
    label: "keep every head of these blocks",
    help: ["keep every head of the attention block of NODE (repeatable)"],
    section: "names",
    surfaces: ALL,
  },
  {
    name: "num-heads",
    kind: "pair-int",
    multiple: true,
    arg: "NODE=H",
    label: "head count of a block (NODE=H)",
    help: ["head count of the attention block of NODE (repeatable)"],
    section: "names",
    surfaces: ALL,
  },
  {
    name: "layer-ratio",
    kind: "pair-ratio",
    multiple: true,
    arg: "NODE=R",
    label: "ratio of one block (NODE=R)",
    help: ["pruning ratio for the block containing NODE (repeatable)"],
    section: "names",
    surfaces: ALL,
  },
  {
    name: "dim",
    kind: "pair-int",
    multiple: true,
    arg: "NAME=N",
    label: "size of a symbolic input dim (NAME=N)",
    help: ["size of a symbolic input dim other than the batch (default 8; repeatable)"],
    section: "names",
    surfaces: ALL,
  },
  {
    name: "criterion",
    kind: "choice",
    choices: CRITERIA,
    surfaceChoices: { service: ["l1", "l2"], page: ["l1", "l2"] },
    label: "channel importance",
    help: [
      "channel importance (default l2); on calibration data: wanda",
      "(Wanda-sp), flap (FLAP's fluctuation), apma (Wanda-sp weighted by",
      "dissimilarity within the head), and from gradients (of the",
      "cross-entropy on a classifier's own predictions, of a random",
      "projection of any other output): taylor (first order; classifiers),",
      "fisher (Fisher of head gates, diagonal for channels), michel",
      "(head gates)",
    ],
    section: "run",
    surfaces: ALL,
  },
  {
    name: "calibration",
    kind: "path",
    multiple: true,
    arg: "PATH",
    label: "calibration data",
    help: [
      "calibration data: a folder of images or .npy files, or a .npy file",
      "(repeatable); needed by data-aware criteria and compensation",
    ],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "evaluate",
    kind: "path",
    multiple: true,
    arg: "PATH",
    label: "held-out data",
    help: [
      "held-out data (as --calibration): report top-1 agreement, KL and",
      "cosine of the pruned model's outputs against the original's",
    ],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "samples",
    kind: "int",
    arg: "N",
    label: "calibration samples",
    help: ["calibration samples to use (default 256)"],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "batch-size",
    kind: "int",
    arg: "N",
    label: "calibration batch size",
    help: ["calibration batch size (default 32)"],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "compensation",
    kind: "choice",
    choices: ["none", "bias", "reweight"],
    label: "compensation",
    help: [
      "refit the layers that read removed channels on the calibration data:",
      "FLAP's bias, or least squares on weights and bias (default none)",
    ],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "no-search",
    kind: "flag",
    label: "no search",
    help: [
      "with --calibration, what --criterion, --compensation and",
      "--allocation leave open is chosen by default: each candidate prunes",
      "on 3/4 of the samples and is scored by its fidelity to the original",
      "on the other 1/4 (KL for classifiers, cosine otherwise), and the",
      "best is kept (a target is then reached in one step unless --steps",
      "is given); --no-search makes one run with the defaults (l2, none,",
      "local — global for targets)",
    ],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "gram-stride",
    kind: "int",
    arg: "N",
    label: "Gram matrix stride",
    help: [
      "reweighting sums its Gram matrices over 1 in N positions (default",
      "4; use 1 with short calibration data)",
    ],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "session-memory",
    kind: "number",
    arg: "MiB",
    label: "memory for weights in onnxruntime",
    help: [
      "memory for the model's weights in onnxruntime during the",
      "statistics pass (float16 counted as float32, as its CPU provider",
      "widens it); a larger model runs a segment of its graph at a time,",
      "each at most half of it, the calibration batches held in memory;",
      "Gram matrices that also take more are summed segment by segment",
      "after the plan (default 512; 0: one session whatever the size)",
    ],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "distill-steps",
    kind: "int",
    arg: "N",
    label: "distillation steps after pruning",
    help: [
      "after pruning, train the pruned model for N steps to match the",
      "original's outputs on the --calibration data (knowledge",
      "distillation; a tenth, at most 256, held out for early",
      "stopping), with",
      "--lr X (AdamW peak learning rate, default 5e-4; warm-up, cosine",
      "decay), --distill-batch-size N (default 32), --seed N (default 0),",
      "--distill-loss kl|cosine|mse|pooled (default: kl for a",
      "classifier's logits, cosine for embeddings; pooled: cosine of the",
      "mean over tokens), --temperature T (kl, default 2),",
      "--distill-hidden (also match every block's output; its weight",
      "--distill-hidden-weight W, default 1),",
      "--distill-embeddings (also train lookup tables: word, position",
      "embeddings; left as they are by default); text models may come",
      "in batches of any length (padded, padding left out)",
    ],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "lr",
    kind: "number",
    arg: "X",
    label: "learning rate",
    help: [],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "distill-batch-size",
    kind: "int",
    arg: "N",
    label: "distillation batch size",
    help: [],
    section: "data",
    surfaces: CLI,
  },
  { name: "seed", kind: "int", arg: "N", label: "seed", help: [], section: "data", surfaces: CLI },
  {
    name: "distill-loss",
    kind: "choice",
    choices: ["kl", "cosine", "mse", "pooled"],
    label: "distillation loss",
    help: [],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "temperature",
    kind: "number",
    arg: "T",
    label: "distillation temperature",
    help: [],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "distill-hidden",
    kind: "flag",
    label: "match block outputs in distillation",
    help: [],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "distill-hidden-weight",
    kind: "number",
    arg: "W",
    label: "weight of the block outputs' loss",
    help: [],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "distill-embeddings",
    kind: "flag",
    label: "train embedding tables in distillation",
    help: [],
    section: "data",
    surfaces: CLI,
  },
  {
    name: "allocation",
    kind: "choice",
    choices: ALLOCATIONS,
    label: "how the ratios are spent",
    help: [
      "local: every block loses the ratios (default); global: the same",
      "parameter budget, spent where scores are lowest across blocks,",
      "heads/dims against MLP channels; flap: the same on scores",
      "standardised per kind (FLAP's adaptive structure); isomorphic:",
      "each kind ranked only against itself (Torch-Pruning's)",
    ],
    section: "run",
    surfaces: ALL,
  },
  {
    name: "gqa-policy",
    kind: "choice",
    choices: GQA_POLICIES,
    label: "grouped-query attention",
    help: [
      "grouped-query attention: drop query heads inside every KV group",
      "(default, as Torch-Pruning) or whole KV groups (as LLM-Pruner)",
    ],
    section: "heads",
    surfaces: ALL,
  },
  {
    name: "backend",
    kind: "choice",
    choices: BACKENDS,
    label: "compute backend",
    help: ["compute backend (default auto)"],
    section: "run",
    surfaces: ALL,
  },
  {
    name: "json",
    kind: "flag",
    label: "JSON report",
    help: ["print the report as JSON on stdout (nothing else)"],
    section: "output",
    surfaces: CLI,
  },
  {
    name: "chart",
    kind: "path",
    arg: "PATH",
    label: "SVG chart",
    help: [
      "write an SVG picture of the remaining heads, head dims and MLP",
      "channels per block",
    ],
    section: "output",
    surfaces: CLI,
  },
  {
    name: "report",
    kind: "path",
    arg: "PATH",
    label: "HTML report",
    help: [
      "write the report as a self-contained HTML page (tables and the",
      "per-block chart)",
    ],
    section: "output",
    surfaces: CLI,
  },
  {
    name: "target-params",
    kind: "amount",
    arg: "N",
    label: "parameters to end with (25M, 50%)",
    help: [
      "prune until the model has at most N parameters / MACs (25M, 1.2G,",
      "or a share of the original: 0.5, 50%), in --steps steps (default 4),",
      "re-scoring the pruned model between steps; ranking by --allocation",
      "(global by default: every kind scored per weight); MLP channels and",
      "head dims (or heads with --prune-num-heads; --separate-qk-v: Q/K and",
      "V dims ranked apart; --head-pruning-ratio 0: no attention), plus",
      "the embedding width with --prune-embedding; every block keeps at",
      "least --min-keep of each kind (default 0.125; 0: one head, two",
      "channels; when calibration data makes a search, no --min-keep",
      "lets it try both)",
    ],
    helpWith: "target-macs",
    section: "target",
    surfaces: ALL,
  },
  {
    name: "target-macs",
    kind: "amount",
    arg: "N",
    label: "MACs to end with (1.2G, 50%)",
    help: [],
    section: "target",
    surfaces: ALL,
  },
  {
    name: "target-speedup",
    kind: "number",
    arg: "S",
    label: "speed-up to reach",
    help: [
      "prune until S× faster: planned on a latency model (one transformer",
      "block timed in onnxruntime over a grid of every shape the run can",
      "reach), within --profile-budget seconds (default 60), at",
      "--latency-batch (default 1) and --latency-threads (default:",
      "onnxruntime's), on --latency-runtime cpu|wasm|webgpu (default cpu:",
      "onnxruntime-node; wasm/webgpu: onnxruntime-web, one thread); units",
      "ranked by importance per millisecond saved, or with --latency-eta η",
      "by importance − η·Δlatency; judged by timing the result against the",
      "original in --check-rounds interleaved rounds (default 7), the last",
      "step corrected when it misses or passes the goal; times read on",
      "--latency-clock wall|cpu (default wall; cpu: the process's CPU time,",
      "for one thread on a machine other work keeps busy); the timed table",
      "is cached in --latency-cache DIR (default ~/.cache/prune-vit/latency)",
    ],
    section: "target",
    surfaces: CLI,
  },
  {
    name: "steps",
    kind: "int",
    arg: "N",
    label: "pruning steps towards the target",
    help: [],
    section: "target",
    surfaces: ALL,
  },
  {
    name: "prune-embedding",
    kind: "flag",
    label: "the target may prune the embedding width",
    help: [],
    section: "target",
    surfaces: ALL,
  },
  {
    name: "separate-qk-v",
    kind: "flag",
    label: "the target ranks Q/K and V dims apart",
    help: [],
    section: "target",
    surfaces: ALL,
  },
  {
    name: "min-keep",
    kind: "ratio",
    arg: "R",
    label: "share of each kind every block keeps",
    help: [],
    section: "target",
    surfaces: ALL,
  },
  {
    name: "profile-budget",
    kind: "number",
    arg: "SECONDS",
    label: "latency profiling budget",
    help: [],
    section: "target",
    surfaces: CLI,
  },
  {
    name: "latency-batch",
    kind: "int",
    arg: "N",
    label: "latency batch",
    help: [],
    section: "target",
    surfaces: CLI,
  },
  {
    name: "latency-cache",
    kind: "path",
    arg: "DIR",
    label: "latency table cache",
    help: [],
    section: "target",
    surfaces: CLI,
  },
  {
    name: "latency-threads",
    kind: "int",
    arg: "N",
    label: "latency threads",
    help: [],
    section: "target",
    surfaces: CLI,
  },
  {
    name: "latency-runtime",
    kind: "choice",
    choices: RUNTIMES,
    label: "latency runtime",
    help: [],
    section: "target",
    surfaces: CLI,
  },
  {
    name: "latency-eta",
    kind: "number",
    arg: "η",
    label: "latency weight η",
    help: [],
    section: "target",
    surfaces: CLI,
  },
  {
    name: "check-rounds",
    kind: "int",
    arg: "N",
    label: "interleaved rounds of the final timing",
    help: [],
    section: "target",
    surfaces: CLI,
  },
  {
    name: "latency-clock",
    kind: "choice",
    choices: CLOCKS,
    label: "latency clock",
    help: [],
    section: "target",
    surfaces: CLI,
  },
  {
    name: "dry-run",
    kind: "flag",
    label: "dry run",
    help: ["report what would be pruned without writing a model"],
    section: "output",
    surfaces: CLI,
  },
  {
    name: "external-data",
    kind: "flag",
    label: "external data",
    excludes: "inline-data",
    help: [
      "write the tensors to OUTPUT.data next to the model (default: when",
      "the input had external data, or the model would pass 2 GB)",
    ],
    section: "output",
    surfaces: CLI,
  },
  {
    name: "inline-data",
    kind: "flag",
    label: "inline data",
    excludes: "external-data",
    help: ["write every tensor inside the model file (at most 2 GB)"],
    section: "output",
    surfaces: CLI,
  },
  {
    name: "verify-run",
    kind: "flag",
    label: "run the pruned model once",
    help: [
      "also run the pruned model once in onnxruntime before writing it",
      "(default: its shapes are checked from the graph, at no cost)",
    ],
    section: "run",
    surfaces: CLI,
  },
  {
    name: "quiet",
    kind: "flag",
    label: "quiet",
    help: ["print nothing on success"],
    section: "output",
    surfaces: CLI,
  },
  {
    name: "help",
    short: "h",
    kind: "flag",
    label: "help",
    help: ["show this help"],
    section: "output",
    surfaces: CLI,
  },
  {
    name: "version",
    kind: "flag",
    label: "version",
    help: ["show the version"],
    section: "output",
    surfaces: CLI,
  },
] as const satisfies readonly OptionSpec[];

type Spec = (typeof OPTIONS)[number];

/** An option's name, as typed on the command line without `--`. */
export type OptionName = Spec["name"];

/** Values as collected from a command line, a query string or a form, before validation:
 * `true` for a flag given, a string per value, a list for repeatable options. */
export type OptionValues = {
  [S in Spec as S["name"]]?: S extends { kind: "flag" } ? boolean
    : S extends { multiple: true } ? string[]
    : string;
};

/** The option of this name, or undefined. */
export function optionSpec(name: string): OptionSpec | undefined {
  return (OPTIONS as readonly OptionSpec[]).find((o) => o.name === name);
}

/** The options one front door offers. */
export function optionsFor(surface: Surface): OptionSpec[] {
  return (OPTIONS as readonly OptionSpec[]).filter((o) => o.surfaces.includes(surface));
}

/** The choices an option offers on a surface. */
export function choicesFor(spec: OptionSpec, surface: Surface): readonly string[] {
  return spec.surfaceChoices?.[surface] ?? spec.choices ?? [];
}

/** `node:util` parseArgs options of the command line. */
export function parseArgsOptions(): Record<
  string,
  { type: "string" | "boolean"; short?: string; multiple?: boolean }
> {
  return Object.fromEntries(
    optionsFor("cli").map((o) => [o.name, {
      type: o.kind === "flag" ? "boolean" : "string",
      ...(o.short ? { short: o.short } : {}),
      ...(o.multiple ? { multiple: true } : {}),
    }]),
  );
}

function usage(o: OptionSpec): string {
  const arg = o.kind === "flag" ? "" : ` ${o.arg ?? choicesFor(o, "cli").join("|")}`;
  return `--${o.name}${arg}`;
}

/** The option lines of `--help`: usage in a 24-column field, then the description. */
export function optionHelp(): string {
  const lines: string[] = [];
  for (const o of optionsFor("cli")) {
    if (o.help.length === 0) continue;
    const joined = o.helpWith ? optionSpec(o.helpWith) : undefined;
    const left = (o.short ? `-${o.short}, ` : "    ") + usage(o) +
      (joined ? `, ${usage(joined)}` : "");
    const [first, ...rest] = o.help;
    if (left.length <= 24) lines.push(`  ${left.padEnd(26)}${first}`);
    else lines.push(`  ${left}`, `${" ".repeat(28)}${first}`);
    for (const line of rest) lines.push(`${" ".repeat(28)}${line}`);
  }
  return lines.join("\n");
}
