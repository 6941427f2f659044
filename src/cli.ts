/**
 * Command line of `@prune/vit`: `deno run -A mod.ts [options] <model.onnx>`.
 *
 * Exit codes: 0 success, 1 a model/file problem ({@link PruneError}) or an internal error,
 * 2 a usage error (bad or unknown option, missing input). Errors go to stderr as
 * `error: <message>`; the stack is printed only with `PRUNE_VIT_DEBUG=1`. Every argument is
 * validated before the model is read, and the model is written (atomically) only at the very
 * end, so a failing run leaves no output file behind.
 *
 * @module
 */
import { parseArgs } from "node:util";
import * as path from "node:path";
import denoJson from "../deno.json" with { type: "json" };
import { PruneError } from "./errors.ts";
import { loadCalibration } from "./calibration/inputs.ts";
import { architectureChart } from "./chart.ts";
import { pruneToTarget, type TargetOptions } from "./target.ts";
import { createLatencyModel, type LatencyModel, targetScope } from "./latency/model.ts";
import {
  LATENCY_CLOCKS,
  LATENCY_RUNTIMES,
  type LatencyClock,
  type LatencyRuntime,
} from "./latency/runtime.ts";
import { ProgressBar } from "./calibration/progress.ts";
import type { RunOptions } from "./prune.ts";
import { formatReport } from "./format_report.ts";
import { readModelFile, writeModelFile } from "./onnx/model_io.ts";
import { tempPath, trackTemp, untrackTemp } from "./onnx/temp_files.ts";
import type { ModelProto } from "./onnx/proto.ts";
import type { PruneReport } from "./report.ts";
import { pruneModel } from "./prune.ts";

/** A bad command line: reported as `error: …` with exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Usage text printed by `--help`. */
export const HELP = `prune-vit ${denoJson.version} — structured pruning of transformer ONNX models

usage: deno run -A mod.ts [options] <model.onnx>

Removes attention heads (grouped-query aware), per-head dims, MLP hidden channels and the
embedding width, and writes a smaller dense ONNX model that onnxruntime runs.

options:
  -o, --output PATH         output model (default: <input>.pruned.onnx)
      --pruning-ratio R     fraction of MLP hidden channels to remove, 0 ≤ R < 1 (default 0)
      --head-pruning-ratio R
                            fraction of heads / head dims to remove (default: --pruning-ratio)
      --embedding-pruning-ratio R
                            fraction of the embedding (residual) width to remove (default 0)
      --qk-pruning-ratio R, --v-pruning-ratio R
                            with --prune-head-dims: prune each head's Q/K dims and V dims
                            separately (NViT); unset, Q, K and V lose the same dims
      --prune-num-heads     remove whole attention heads
      --prune-head-dims     remove the same number of dims from every head
      --round-to N          round kept channel counts to a multiple of N
      --ignore NAME         node/initializer name or prefix to leave alone (repeatable)
      --keep-heads NODE     keep every head of the attention block of NODE (repeatable)
      --num-heads NODE=H    head count of the attention block of NODE (repeatable)
      --layer-ratio NODE=R  pruning ratio for the block containing NODE (repeatable)
      --dim NAME=N          size of a symbolic input dim other than the batch (default 8; repeatable)
      --criterion l1|l2|wanda|flap|apma|taylor|fisher|michel
                            channel importance (default l2); on calibration data: wanda
                            (Wanda-sp), flap (FLAP's fluctuation), apma (Wanda-sp weighted by
                            dissimilarity within the head), and from gradients of the
                            cross-entropy on the model's own predictions (classifiers): taylor
                            (first order), fisher (diagonal Fisher), michel (head gates)
      --calibration PATH    calibration data: a folder of images or .npy files, or a .npy file
                            (repeatable); needed by data-aware criteria and compensation
      --evaluate PATH       held-out data (as --calibration): report top-1 agreement, KL and
                            cosine of the pruned model's outputs against the original's
      --samples N           calibration samples to use (default 256)
      --batch-size N        calibration batch size (default 32)
      --compensation none|bias|reweight
                            refit the layers that read removed channels on the calibration data:
                            FLAP's bias, or least squares on weights and bias (default none)
      --gram-stride N       reweighting sums its Gram matrices over 1 in N positions (default
                            4; use 1 with short calibration data)
      --allocation local|global|flap|isomorphic
                            local: every block loses the ratios (default); global: the same
                            parameter budget, spent where scores are lowest across blocks,
                            heads/dims against MLP channels; flap: the same on scores
                            standardised per kind (FLAP's adaptive structure); isomorphic:
                            each kind ranked only against itself (Torch-Pruning's)
      --gqa-policy query-heads|kv-groups
                            grouped-query attention: drop query heads inside every KV group
                            (default, as Torch-Pruning) or whole KV groups (as LLM-Pruner)
      --backend auto|gpu|cpu
                            compute backend (default auto)
      --json                print the report as JSON on stdout (nothing else)
      --chart PATH          write an SVG picture of the remaining heads, head dims and MLP
                            channels per block
      --target-params N, --target-macs N
                            prune until the model has at most N parameters / MACs (25M, 1.2G,
                            or a share of the original: 0.5, 50%), in --steps steps (default 4),
                            re-scoring the pruned model between steps; ranking by --allocation
                            (global by default); MLP channels, plus heads or head dims with
                            their flags (--separate-qk-v: Q/K and V dims ranked apart), plus the
                            embedding width with --prune-embedding; every block keeps at least
                            --min-keep of each kind (default 0.125; 0: one head, two channels)
      --target-speedup S    prune until S× faster: planned on a latency model (one transformer
                            block timed in onnxruntime over a grid of every shape the run can
                            reach, cached), within --profile-budget seconds (default 60), at
                            --latency-batch (default 1) and --latency-threads (default:
                            onnxruntime's), on --latency-runtime cpu|wasm|webgpu (default cpu:
                            onnxruntime-node; wasm/webgpu: onnxruntime-web, one thread); units
                            ranked by importance per millisecond saved, or with --latency-eta η
                            by importance − η·Δlatency; judged by timing the result against the
                            original in --check-rounds interleaved rounds (default 7), the last
                            step corrected when it misses or passes the goal; times read on
                            --latency-clock wall|cpu (default wall; cpu: the process's CPU time,
                            for one thread on a machine other work keeps busy)
      --dry-run             report what would be pruned without writing a model
      --external-data       write the tensors to OUTPUT.data next to the model (default: when
                            the input had external data, or the model would pass 2 GB)
      --inline-data         write every tensor inside the model file (at most 2 GB)
      --verify-run          also run the pruned model once in onnxruntime before writing it
                            (default: its shapes are checked from the graph, at no cost)
      --quiet               print nothing on success
  -h, --help                show this help
      --version             show the version

exit codes: 0 ok, 1 model or file problem, 2 usage error.
Set PRUNE_VIT_DEBUG=1 to print stack traces.`;

/** Parsed and validated command line. */
export interface CliArgs {
  input: string;
  output: string;
  /** Calibration files or folders (`--calibration`), samples and batch size. */
  calibration: { paths: string[]; samples: number; batchSize: number };
  /** Held-out data files or folders (`--evaluate`). */
  evaluate: string[];
  /** Pruning options plus `dimValues` (from `--dim`). */
  options: RunOptions;
  json: boolean;
  dryRun: boolean;
  quiet: boolean;
  /** Tensor data next to the model (true), inline (false), or as the input had it / as size
   * needs (undefined). */
  externalData?: boolean;
  /** Where to write the SVG picture of the pruned architecture (`--chart`). */
  chart?: string;
  /** Pruning to a target (`--target-*`), with the latency model's settings. */
  target?: TargetOptions & {
    budgetSeconds: number;
    batch: number;
    cacheDir?: string;
    threads?: number;
    runtime?: LatencyRuntime;
    /** Interleaved rounds of the final check of a speed-up. */
    rounds?: number;
    clock?: LatencyClock;
  };
}

const OPTION_SPEC = {
  output: { type: "string", short: "o" },
  "pruning-ratio": { type: "string" },
  "head-pruning-ratio": { type: "string" },
  "embedding-pruning-ratio": { type: "string" },
  "qk-pruning-ratio": { type: "string" },
  "v-pruning-ratio": { type: "string" },
  "prune-num-heads": { type: "boolean" },
  "prune-head-dims": { type: "boolean" },
  "round-to": { type: "string" },
  ignore: { type: "string", multiple: true },
  "keep-heads": { type: "string", multiple: true },
  "num-heads": { type: "string", multiple: true },
  "layer-ratio": { type: "string", multiple: true },
  dim: { type: "string", multiple: true },
  criterion: { type: "string" },
  allocation: { type: "string" },
  calibration: { type: "string", multiple: true },
  evaluate: { type: "string", multiple: true },
  samples: { type: "string" },
  "batch-size": { type: "string" },
  "gram-stride": { type: "string" },
  compensation: { type: "string" },
  "gqa-policy": { type: "string" },
  backend: { type: "string" },
  json: { type: "boolean" },
  chart: { type: "string" },
  "target-params": { type: "string" },
  "target-macs": { type: "string" },
  "target-speedup": { type: "string" },
  steps: { type: "string" },
  "profile-budget": { type: "string" },
  "latency-batch": { type: "string" },
  "latency-cache": { type: "string" },
  "latency-threads": { type: "string" },
  "latency-runtime": { type: "string" },
  "latency-eta": { type: "string" },
  "min-keep": { type: "string" },
  "check-rounds": { type: "string" },
  "latency-clock": { type: "string" },
  "prune-embedding": { type: "boolean" },
  "separate-qk-v": { type: "boolean" },
  "dry-run": { type: "boolean" },
  "verify-run": { type: "boolean" },
  "external-data": { type: "boolean" },
  "inline-data": { type: "boolean" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

const NUMBER_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function parseRatio(option: string, value: string): number {
  const r = NUMBER_RE.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isFinite(r)) {
    throw new UsageError(`${option}: "${value}" is not a number (expected 0 ≤ R < 1)`);
  }
  if (r < 0 || r >= 1) {
    throw new UsageError(`${option}: ${value} is out of range (expected 0 ≤ R < 1)`);
  }
  return r;
}

/** A count (25M, 1.2G, 300000) or a share of the original (0.5, 50%). */
function parseAmount(option: string, value: string): number {
  const m = /^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?\d+)?)\s*([kKmMgG%]?)\s*$/.exec(value);
  const n = m ? Number(m[1]) : NaN;
  const scale = { "": 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6, g: 1e9, G: 1e9, "%": 0.01 }[m?.[2] ?? ""];
  if (!m || !Number.isFinite(n) || n <= 0 || scale === undefined) {
    throw new UsageError(
      `${option}: "${value}" is not a count (e.g. 25M) or a share of the original (0.5 or 50%)`,
    );
  }
  // A share must leave something to prune; a plain number above 1 is a count, so whole.
  if (m[2] === "%" && n >= 100) {
    throw new UsageError(
      `${option}: ${value} is not below 100% of the original; give a share below 100% (e.g. 50%)`,
    );
  }
  if (m[2] === "" && n >= 1 && !Number.isInteger(n)) {
    throw new UsageError(
      `${option}: ${value} is neither a share of the original (below 1, e.g. 0.5 or 50%) nor ` +
        `a whole count (e.g. 25M)`,
    );
  }
  if (m[2] === "" && n === 1) {
    throw new UsageError(
      `${option}: 1 would be the whole original (as a share) or one parameter; give a share ` +
        `below 1 (e.g. 0.5 or 50%) or a count (e.g. 25M)`,
    );
  }
  return m[2] === "%" || m[2] === "" ? n * scale : Math.round(n * scale);
}

function parsePositive(option: string, value: string): number {
  const n = NUMBER_RE.test(value.trim()) ? Number(value) : NaN;
  if (!(n > 0)) throw new UsageError(`${option}: "${value}" is not a positive number`);
  return n;
}

function parsePositiveInt(option: string, value: string): number {
  const t = value.trim();
  if (!/^\+?\d+$/.test(t) || Number(t) < 1 || !Number.isSafeInteger(Number(t))) {
    throw new UsageError(`${option}: "${value}" is not a positive integer`);
  }
  return Number(t);
}

function parsePairs<T>(
  option: string,
  values: string[] | undefined,
  form: string,
  parseValue: (v: string) => T,
): Record<string, T> | undefined {
  if (!values || values.length === 0) return undefined;
  const out: Record<string, T> = {};
  for (const item of values) {
    const eq = item.lastIndexOf("=");
    const key = eq < 0 ? "" : item.slice(0, eq).trim();
    const val = eq < 0 ? "" : item.slice(eq + 1).trim();
    if (eq < 0 || key === "" || val === "") {
      throw new UsageError(`${option}: "${item}" is not of the form ${form}`);
    }
    if (Object.hasOwn(out, key)) throw new UsageError(`${option}: ${key} is given twice`);
    out[key] = parseValue(val);
  }
  return out;
}

function oneOf<T extends string>(option: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`${option}: "${value}" is not one of ${allowed.join(", ")}`);
  }
  return value as T;
}

/** `model.onnx` → `model.pruned.onnx`; `model` → `model.pruned.onnx`. */
export function defaultOutput(input: string): string {
  const base = input.toLowerCase().endsWith(".onnx") ? input.slice(0, -5) : input;
  return `${base}.pruned.onnx`;
}

/** Options that take a value, by every spelling. */
const VALUE_FLAGS = new Set(
  Object.entries(OPTION_SPEC).flatMap(([name, spec]) =>
    spec.type === "string" ? [`--${name}`, ...("short" in spec ? [`-${spec.short}`] : [])] : []
  ),
);

/** `--pruning-ratio -0.1` → `--pruning-ratio=-0.1`, so negative numbers reach validation. */
function joinNegativeValues(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    if (VALUE_FLAGS.has(a) && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(a.startsWith("--") ? `${a}=${next}` : `${a}${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

function parseError(e: unknown): UsageError {
  const err = e as { code?: string; message?: string };
  const msg = String(err.message ?? e);
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const m = msg.match(/Unknown option '([^']+)'/);
    return new UsageError(`unknown option ${m ? m[1] : msg} (see --help)`);
  }
  if (err.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const m = msg.match(/Option '(?:-\w, )?(--[\w-]+)/);
    if (m && (msg.includes("argument missing") || msg.includes("ambiguous"))) {
      return new UsageError(`${m[1]} needs a value`);
    }
    if (m) return new UsageError(`${m[1]} takes no value`);
  }
  return new UsageError(msg);
}

/**
 * Parses and validates `args` (without the program name). Returns `"help"` / `"version"` for
 * those flags. Throws {@link UsageError} naming the option and the bad value.
 */
export function parseCliArgs(args: string[]): CliArgs | "help" | "version" {
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args),
      options: OPTION_SPEC,
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw parseError(e);
  }
  const v = parsed.values;
  if (v.help) return "help";
  if (v.version) return "version";

  // A value that looks like an option was probably meant as one (`-o --json`).
  const valued = [
    "output",
    "pruning-ratio",
    "head-pruning-ratio",
    "embedding-pruning-ratio",
    "qk-pruning-ratio",
    "v-pruning-ratio",
    "round-to",
  ] as const;
  for (const key of valued) {
    const val = v[key];
    if (typeof val === "string" && /^--?[a-z]/i.test(val)) {
      throw new UsageError(`--${key} needs a value, got option ${val}`);
    }
  }

  const options: RunOptions = {};
  if (v["pruning-ratio"] !== undefined) {
    options.pruningRatio = parseRatio("--pruning-ratio", v["pruning-ratio"]);
  }
  if (v["embedding-pruning-ratio"] !== undefined) {
    options.embeddingPruningRatio = parseRatio(
      "--embedding-pruning-ratio",
      v["embedding-pruning-ratio"],
    );
  }
  for (
    const [flag, key] of [["qk-pruning-ratio", "qkPruningRatio"], [
      "v-pruning-ratio",
      "vPruningRatio",
    ]] as const
  ) {
    if (v[flag] !== undefined) options[key] = parseRatio(`--${flag}`, v[flag]);
  }
  if (v["head-pruning-ratio"] !== undefined) {
    options.headPruningRatio = parseRatio("--head-pruning-ratio", v["head-pruning-ratio"]);
  }
  if (v["prune-num-heads"] && v["prune-head-dims"]) {
    throw new UsageError(
      "--prune-num-heads and --prune-head-dims cannot be combined: pick one (run twice to do both)",
    );
  }
  if (v["prune-num-heads"]) options.pruneNumHeads = true;
  if (v["prune-head-dims"]) options.pruneHeadDims = true;
  if (v["round-to"] !== undefined) {
    options.roundTo = parsePositiveInt("--round-to", v["round-to"]);
  }
  if (v.ignore) {
    for (const name of v.ignore) {
      if (name.trim() === "") throw new UsageError(`--ignore: empty name`);
    }
    options.ignore = v.ignore.map((s) => s.trim());
  }
  if (v["keep-heads"]) {
    for (const name of v["keep-heads"]) {
      if (name.trim() === "") throw new UsageError(`--keep-heads: empty name`);
    }
    options.keepHeads = v["keep-heads"].map((s) => s.trim());
  }
  if (v["verify-run"]) options.verifyRun = true;
  if (v["external-data"] && v["inline-data"]) {
    throw new UsageError("choose one of --external-data and --inline-data");
  }
  const numHeads = parsePairs(
    "--num-heads",
    v["num-heads"],
    "NODE=H",
    (s) => parsePositiveInt("--num-heads", s),
  );
  if (numHeads) options.numHeads = numHeads;
  const layerRatios = parsePairs(
    "--layer-ratio",
    v["layer-ratio"],
    "NODE=R",
    (s) => parseRatio("--layer-ratio", s),
  );
  if (layerRatios) options.layerRatios = layerRatios;
  const dims = parsePairs("--dim", v.dim, "NAME=N", (s) => parsePositiveInt("--dim", s));
  if (dims) options.dimValues = dims;
  if (v["gqa-policy"] !== undefined) {
    options.gqaPolicy = oneOf(
      "--gqa-policy",
      v["gqa-policy"],
      ["query-heads", "kv-groups"] as const,
    );
  }
  if (v.allocation !== undefined) {
    options.allocation = oneOf(
      "--allocation",
      v.allocation,
      [
        "local",
        "global",
        "flap",
        "isomorphic",
      ] as const,
    );
  }
  if (v.criterion !== undefined) {
    options.criterion = oneOf(
      "--criterion",
      v.criterion,
      [
        "l1",
        "l2",
        "wanda",
        "flap",
        "apma",
        "taylor",
        "fisher",
        "michel",
      ] as const,
    );
  }
  if (v["gram-stride"] !== undefined) {
    options.gramStride = parsePositiveInt("--gram-stride", v["gram-stride"]);
  }
  if (v.compensation !== undefined) {
    options.compensation = oneOf(
      "--compensation",
      v.compensation,
      [
        "none",
        "bias",
        "reweight",
      ] as const,
    );
  }
  if (v.backend !== undefined) {
    options.backend = oneOf("--backend", v.backend, ["auto", "gpu", "cpu"] as const);
  }

  const pos = parsed.positionals;
  if (pos.length === 0) {
    throw new UsageError("missing input model (usage: mod.ts [options] <model.onnx>)");
  }
  if (pos.length > 1) {
    throw new UsageError(`expected one input model, got ${pos.length}: ${pos.join(" ")}`);
  }
  const input = pos[0];
  if (input.trim() === "") throw new UsageError("input model path is empty");
  if (v.output !== undefined && v.output.trim() === "") {
    throw new UsageError("--output: empty path");
  }
  const output = v.output ?? defaultOutput(input);
  if (path.resolve(output) === path.resolve(input)) {
    throw new UsageError(`--output: ${output} is the input model; refusing to overwrite it`);
  }
  let target: CliArgs["target"];
  const targets = (["target-params", "target-macs", "target-speedup"] as const).filter((k) =>
    v[k] !== undefined
  );
  if (targets.length > 1) {
    throw new UsageError(`${targets.map((t) => `--${t}`).join(" and ")}: give one target`);
  }
  if (targets.length === 1) {
    if (v["pruning-ratio"] !== undefined || v["head-pruning-ratio"] !== undefined) {
      throw new UsageError(
        `--${targets[0]} decides how much to prune: drop --pruning-ratio / --head-pruning-ratio`,
      );
    }
    target = {
      budgetSeconds: v["profile-budget"] === undefined
        ? 60
        : parsePositive("--profile-budget", v["profile-budget"]),
      batch: v["latency-batch"] === undefined
        ? 1
        : parsePositiveInt("--latency-batch", v["latency-batch"]),
      cacheDir: v["latency-cache"],
      ...(v["latency-threads"] !== undefined
        ? { threads: parsePositiveInt("--latency-threads", v["latency-threads"]) }
        : {}),
      ...(v["latency-runtime"] !== undefined
        ? { runtime: oneOf("--latency-runtime", v["latency-runtime"], LATENCY_RUNTIMES) }
        : {}),
      ...(v.steps !== undefined ? { steps: parsePositiveInt("--steps", v.steps) } : {}),
      ...(v["min-keep"] !== undefined ? { minKeep: parseRatio("--min-keep", v["min-keep"]) } : {}),
      ...(v["check-rounds"] !== undefined
        ? { rounds: parsePositiveInt("--check-rounds", v["check-rounds"]) }
        : {}),
      ...(v["latency-clock"] !== undefined
        ? { clock: oneOf("--latency-clock", v["latency-clock"], LATENCY_CLOCKS) }
        : {}),
    };
    if (v["target-params"] !== undefined) {
      target.params = parseAmount("--target-params", v["target-params"]);
    }
    if (v["target-macs"] !== undefined) {
      target.macs = parseAmount("--target-macs", v["target-macs"]);
    }
    if (v["target-speedup"] !== undefined) {
      target.speedup = parsePositive("--target-speedup", v["target-speedup"]);
      if (target.speedup <= 1) throw new UsageError(`--target-speedup: must be above 1`);
    }
    if (v["prune-embedding"]) options.pruneEmbedding = true;
    if (v["separate-qk-v"]) {
      if (!options.pruneHeadDims) {
        throw new UsageError("--separate-qk-v goes with --prune-head-dims");
      }
      options.separateQkV = true;
    }
  } else {
    for (
      const k of [
        "steps",
        "profile-budget",
        "latency-batch",
        "latency-cache",
        "latency-threads",
        "latency-runtime",
        "latency-eta",
        "min-keep",
        "check-rounds",
        "latency-clock",
        "prune-embedding",
        "separate-qk-v",
      ] as const
    ) {
      if (v[k] !== undefined) throw new UsageError(`--${k} goes with a --target-… option`);
    }
  }
  for (const k of ["check-rounds", "latency-clock"] as const) {
    if (v[k] !== undefined && !target?.speedup) {
      throw new UsageError(`--${k} goes with --target-speedup`);
    }
  }
  if (target?.clock === "cpu" && target.runtime !== "wasm" && target.threads !== 1) {
    throw new UsageError(
      target.runtime === "webgpu"
        ? "--latency-clock cpu: WebGPU work is not CPU time"
        : "--latency-clock cpu goes with --latency-threads 1 (CPU time adds up over threads)",
    );
  }
  if (v["latency-eta"] !== undefined) {
    if (!target?.speedup) throw new UsageError("--latency-eta goes with --target-speedup");
    options.latencyEta = parsePositive("--latency-eta", v["latency-eta"]);
  }
  if (v.chart !== undefined) {
    if (v.chart === "") throw new UsageError("--chart: empty path");
    if (path.resolve(v.chart) === path.resolve(input)) {
      throw new UsageError(`--chart: ${v.chart} is the input model; refusing to overwrite it`);
    }
  }
  return {
    input,
    output,
    options,
    chart: v.chart,
    target,
    json: !!v.json,
    dryRun: !!v["dry-run"],
    quiet: !!v.quiet,
    ...(v["external-data"]
      ? { externalData: true }
      : v["inline-data"]
      ? { externalData: false }
      : {}),
    evaluate: v.evaluate ?? [],
    calibration: {
      paths: v.calibration ?? [],
      samples: v.samples === undefined ? 256 : parsePositiveInt("--samples", v.samples),
      batchSize: v["batch-size"] === undefined
        ? 32
        : parsePositiveInt("--batch-size", v["batch-size"]),
    },
  };
}

async function realOrNull(p: string): Promise<string | null> {
  try {
    return await Deno.realPath(p);
  } catch {
    return null;
  }
}

/**
 * Prunes to a target: the calibration data is opened afresh for every step; a speed-up target
 * profiles the latency model first (progress on stderr) over the shapes this run can reach, and
 * is judged by timing the result against the original.
 */
async function pruneTowards(
  model: ModelProto,
  target: NonNullable<CliArgs["target"]>,
  options: RunOptions,
  quiet: boolean,
): Promise<{ model: ModelProto; report: PruneReport }> {
  let latency: LatencyModel | undefined;
  if (target.speedup) {
    const progress = new ProgressBar(0, { quiet, unit: "block shapes timed" });
    latency = await createLatencyModel(model, {
      batch: target.batch,
      budgetSeconds: target.budgetSeconds,
      threads: target.threads,
      runtime: target.runtime,
      ...(target.cacheDir !== undefined ? { cacheDir: target.cacheDir } : {}),
      ...(target.rounds !== undefined ? { rounds: target.rounds } : {}),
      ...(target.clock !== undefined ? { clock: target.clock } : {}),
      scope: targetScope(options, target.minKeep),
      onProgress: progress.callback,
    });
    progress.finish();
  }
  const result = await pruneToTarget(model, { ...target, latency }, options);
  result.report.target = result.target;
  const measured = result.target.measured;
  if (latency && measured) {
    result.report.latency = {
      batch: target.batch,
      estimated: { before: result.target.before, after: result.target.reached },
      measured: { before: measured.originalMs, after: measured.prunedMs },
      speedup: {
        measured: measured.speedup,
        low: measured.low,
        high: measured.high,
        rounds: measured.rounds,
      },
      clock: target.clock ?? "wall",
      profileSeconds: latency.table.seconds,
      blockScale: latency.blockScale,
      fitted: latency.fitted,
      ...(latency.table.note ? { tableNote: latency.table.note } : {}),
    };
  }
  return result;
}

async function* reopen<T>(open: () => Promise<AsyncIterable<T>>): AsyncGenerator<T> {
  yield* await open();
}

/** Writes a text file through a temporary file and a rename: never half a file. */
async function writeTextAtomic(file: string, text: string): Promise<void> {
  const temp = tempPath(file);
  trackTemp(temp);
  try {
    await Deno.writeTextFile(temp, text);
    await Deno.rename(temp, file);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    const why = e instanceof Error ? e.message : String(e);
    throw new PruneError("output-dir", `cannot write ${file}: ${why}`);
  } finally {
    untrackTemp(temp);
  }
}

/** Checks the output location before any work: folder exists, output is not the input. */
async function checkOutput(input: string, output: string): Promise<void> {
  const dir = path.dirname(path.resolve(output));
  let stat;
  try {
    stat = await Deno.stat(dir);
  } catch {
    throw new PruneError("output-dir", `output folder ${path.dirname(output)} does not exist`);
  }
  if (!stat.isDirectory) {
    throw new PruneError("output-dir", `output folder ${path.dirname(output)} is not a folder`);
  }
  const [ri, ro] = await Promise.all([realOrNull(input), realOrNull(output)]);
  if (ri !== null && ri === ro) {
    throw new PruneError(
      "output-is-input",
      `output ${output} is the input model; refusing to overwrite it`,
    );
  }
  try {
    if ((await Deno.stat(output)).isDirectory) {
      throw new PruneError("output-dir", `output ${output} is a folder`);
    }
  } catch (e) {
    if (e instanceof PruneError) throw e;
  }
}

/** Temp files of killed runs found beside the output: said on stderr (stdout may be JSON). */
function reportLeftovers(found: { removed: string[]; kept: string[] }): void {
  if (found.removed.length) {
    console.error(
      `note: removed ${found.removed.length} temporary file(s) left by interrupted runs: ` +
        found.removed.join(", "),
    );
  }
  if (found.kept.length) {
    console.error(
      `note: temporary file(s) of earlier runs, possibly interrupted, remain: ` +
        `${found.kept.join(", ")} (remove them if no run is writing there)`,
    );
  }
}

function debug(): boolean {
  try {
    return Deno.env.get("PRUNE_VIT_DEBUG") === "1";
  } catch {
    return false;
  }
}

function printError(e: unknown, internal: boolean): void {
  const err = e instanceof Error ? e : new Error(String(e));
  if (internal) {
    console.error(`error: internal error: ${err.message}`);
    if (!debug()) console.error("(set PRUNE_VIT_DEBUG=1 to see the stack trace)");
  } else {
    console.error(`error: ${err.message}`);
  }
  if (debug() && err.stack) console.error(err.stack);
}

/**
 * Runs the CLI with `args` (no program name) and returns the exit code. Never exits the
 * process itself.
 */
export async function main(args: string[]): Promise<number> {
  let cli: CliArgs;
  try {
    const parsed = parseCliArgs(args);
    if (parsed === "help") {
      console.log(HELP);
      return 0;
    }
    if (parsed === "version") {
      console.log(denoJson.version);
      return 0;
    }
    cli = parsed;
  } catch (e) {
    if (e instanceof UsageError) {
      printError(e, false);
      return 2;
    }
    printError(e, true);
    return 1;
  }

  try {
    if (!cli.dryRun) await checkOutput(cli.input, cli.output);
    const model = await readModelFile(cli.input);
    const { paths, samples, batchSize } = cli.calibration;
    const load = async (paths: string[], quiet: boolean) => {
      // One folder, or a list of files.
      const folder = paths.length === 1 &&
        (await Deno.stat(paths[0]).catch(() => null))?.isDirectory;
      const progress = new ProgressBar(samples, { quiet });
      return await loadCalibration(
        folder ? { folder: paths[0] } : { files: paths },
        model,
        { batchSize, samples, onProgress: progress.callback },
      );
    };
    if (paths.length) {
      const first = await load(paths, cli.quiet || cli.json);
      // A target run passes over the data at every step: each pass opens it afresh.
      let used = false;
      cli.options.calibration = cli.target
        ? () => {
          if (!used) return (used = true, first);
          return { [Symbol.asyncIterator]: () => reopen(() => load(paths, true)) };
        }
        : first;
    }
    if (cli.evaluate.length) cli.options.evaluation = { batches: await load(cli.evaluate, true) };
    const run = cli.target
      ? () => pruneTowards(model, cli.target!, cli.options, cli.quiet || cli.json)
      : () => pruneModel(model, cli.options);
    const { model: pruned, report } = await run().catch((e) => {
      // Engine errors speak of nodes and options; say which file they are about.
      if (e instanceof PruneError && !e.message.includes(cli.input)) {
        throw new PruneError(e.code, `${cli.input}: ${e.message}`);
      }
      throw e;
    });
    if (!cli.dryRun) {
      const { leftovers } = await writeModelFile(pruned, cli.output, {
        inputPath: cli.input,
        ...(cli.externalData !== undefined ? { externalData: cli.externalData } : {}),
      });
      if (!cli.quiet) reportLeftovers(leftovers);
    }
    if (cli.chart) {
      await writeTextAtomic(cli.chart, architectureChart(report, path.basename(cli.output)));
    }
    if (cli.json) {
      console.log(JSON.stringify(report, null, 2));
    } else if (!cli.quiet) {
      console.log(formatReport(report, { output: cli.output, dryRun: cli.dryRun }));
    }
    return 0;
  } catch (e) {
    if (e instanceof PruneError) {
      printError(e, false);
      return 1;
    }
    printError(e, true);
    return 1;
  }
}
