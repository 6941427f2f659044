/**
 * Checks the values of {@link OPTIONS} (from a command line, a query string or the page's form)
 * and turns them into the library's options. Every message names the option and the value.
 *
 * @module
 */
import type { RunOptions } from "./prune.ts";
import type { TargetOptions } from "./target.ts";
import type { LatencyClock, LatencyRuntime } from "./latency/runtime.ts";
import {
  choicesFor,
  type OptionName,
  OPTIONS,
  type OptionSpec,
  optionSpec,
  type OptionValues,
  type Surface,
} from "./option_table.ts";

/** A bad option or value: the CLI's exit code 2, the service's 400. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A target run (`--target-*`) with the latency model's settings. */
export type TargetRequest = TargetOptions & {
  budgetSeconds: number;
  batch: number;
  cacheDir?: string;
  threads?: number;
  runtime?: LatencyRuntime;
  /** Interleaved rounds of the final check of a speed-up. */
  rounds?: number;
  /** What the latency is read on: wall time, or the process's CPU time. */
  clock?: LatencyClock;
};

/** How an option is spelled in messages: `--pruning-ratio` on the command line, the bare name
 * as a query parameter or a form field. */
export function spelling(surface: Surface): (name: OptionName) => string {
  return surface === "cli" ? (name) => `--${name}` : (name) => name;
}

const NUMBER_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

export function parseRatio(option: string, value: string): number {
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
export function parseAmount(option: string, value: string): number {
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

export function parsePositive(option: string, value: string): number {
  const n = NUMBER_RE.test(value.trim()) ? Number(value) : NaN;
  if (!(n > 0)) throw new UsageError(`${option}: "${value}" is not a positive number`);
  return n;
}

export function parsePositiveInt(option: string, value: string): number {
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

export function oneOf<T extends string>(option: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`${option}: "${value}" is not one of ${allowed.join(", ")}`);
  }
  return value as T;
}

function names(option: string, values: string[]): string[] {
  for (const name of values) {
    if (name.trim() === "") throw new UsageError(`${option}: empty name`);
  }
  return values.map((s) => s.trim());
}

/**
 * The library's options from checked values: ratios, head mode, rounding, names, choices.
 * Targets are read by {@link targetFrom}.
 *
 * @example pruneOptionsFrom({ "prune-num-heads": true, "head-pruning-ratio": "0.5" }, "service")
 */
export function pruneOptionsFrom(v: OptionValues, surface: Surface = "cli"): RunOptions {
  const s = spelling(surface);
  const choice = <T extends string>(name: OptionName, value: string) =>
    oneOf(s(name), value, choicesFor(optionSpec(name)!, surface) as readonly T[]);
  const options: RunOptions = {};
  if (v["pruning-ratio"] !== undefined) {
    options.pruningRatio = parseRatio(s("pruning-ratio"), v["pruning-ratio"]);
  }
  if (v["embedding-pruning-ratio"] !== undefined) {
    options.embeddingPruningRatio = parseRatio(
      s("embedding-pruning-ratio"),
      v["embedding-pruning-ratio"],
    );
  }
  for (
    const [flag, key] of [["qk-pruning-ratio", "qkPruningRatio"], [
      "v-pruning-ratio",
      "vPruningRatio",
    ]] as const
  ) {
    if (v[flag] !== undefined) options[key] = parseRatio(s(flag), v[flag]);
  }
  if (v["head-pruning-ratio"] !== undefined) {
    options.headPruningRatio = parseRatio(s("head-pruning-ratio"), v["head-pruning-ratio"]);
  }
  if (v["prune-num-heads"] && v["prune-head-dims"]) {
    throw new UsageError(
      `${s("prune-num-heads")} and ${
        s("prune-head-dims")
      } cannot be combined: pick one (run twice to do both)`,
    );
  }
  if (v["prune-num-heads"]) options.pruneNumHeads = true;
  if (v["prune-head-dims"]) options.pruneHeadDims = true;
  if (v["round-to"] !== undefined) {
    options.roundTo = parsePositiveInt(s("round-to"), v["round-to"]);
  }
  if (v.ignore) options.ignore = names(s("ignore"), v.ignore);
  if (v["keep-heads"]) options.keepHeads = names(s("keep-heads"), v["keep-heads"]);
  if (v["verify-run"]) options.verifyRun = true;
  const numHeads = parsePairs(
    s("num-heads"),
    v["num-heads"],
    "NODE=H",
    (x) => parsePositiveInt(s("num-heads"), x),
  );
  if (numHeads) options.numHeads = numHeads;
  const layerRatios = parsePairs(
    s("layer-ratio"),
    v["layer-ratio"],
    "NODE=R",
    (x) => parseRatio(s("layer-ratio"), x),
  );
  if (layerRatios) options.layerRatios = layerRatios;
  const dims = parsePairs(s("dim"), v.dim, "NAME=N", (x) => parsePositiveInt(s("dim"), x));
  if (dims) options.dimValues = dims;
  if (v["gqa-policy"] !== undefined) options.gqaPolicy = choice("gqa-policy", v["gqa-policy"]);
  if (v.allocation !== undefined) options.allocation = choice("allocation", v.allocation);
  if (v.criterion !== undefined) {
    const all = optionSpec("criterion")!.choices!;
    if (
      all.includes(v.criterion) &&
      !choicesFor(optionSpec("criterion")!, surface).includes(v.criterion)
    ) {
      throw new UsageError(
        `${s("criterion")}: "${v.criterion}" needs calibration data, which only the command ` +
          `line reads (here: ${choicesFor(optionSpec("criterion")!, surface).join(", ")})`,
      );
    }
    options.criterion = choice("criterion", v.criterion);
  }
  if (v["gram-stride"] !== undefined) {
    options.gramStride = parsePositiveInt(s("gram-stride"), v["gram-stride"]);
  }
  if (v["session-memory"] !== undefined) {
    const mib = Number(v["session-memory"]);
    if (!Number.isFinite(mib) || mib < 0 || v["session-memory"].trim() === "") {
      throw new UsageError(
        `${s("session-memory")} takes mebibytes (a number ≥ 0; 0: one session whatever the ` +
          `size), got "${v["session-memory"]}"`,
      );
    }
    options.sessionMemory = mib === 0 ? Infinity : mib * 2 ** 20;
  }
  if (v.compensation !== undefined) options.compensation = choice("compensation", v.compensation);
  if (v.backend !== undefined) options.backend = choice("backend", v.backend);
  // With calibration data, what the options leave open is chosen on held-out samples.
  if (surface === "cli" && v.calibration?.length && !v["no-search"]) options.search = true;
  distillFrom(v, options, s);
  return options;
}

/** Distillation after pruning (the command line: it reads the calibration files). */
function distillFrom(v: OptionValues, options: RunOptions, s: (n: OptionName) => string): void {
  const flags = [
    "lr",
    "distill-batch-size",
    "seed",
    "distill-loss",
    "temperature",
    "distill-hidden",
    "distill-hidden-weight",
    "distill-embeddings",
  ] as const;
  if (v["distill-steps"] === undefined) {
    const given = flags.find((k) => v[k] !== undefined);
    if (given) throw new UsageError(`${s(given)} goes with ${s("distill-steps")}`);
    return;
  }
  if (!v.calibration?.length) {
    throw new UsageError(
      `${s("distill-steps")} needs ${s("calibration")} (the data to distill on)`,
    );
  }
  if (v["dry-run"]) throw new UsageError(`${s("distill-steps")} cannot go with ${s("dry-run")}`);
  const distill: NonNullable<RunOptions["distill"]> = {
    steps: parsePositiveInt(s("distill-steps"), v["distill-steps"]),
  };
  if (v.lr !== undefined) distill.lr = parsePositive(s("lr"), v.lr);
  if (v["distill-batch-size"] !== undefined) {
    distill.batchSize = parsePositiveInt(s("distill-batch-size"), v["distill-batch-size"]);
  }
  if (v.seed !== undefined) {
    if (!/^\s*\d+\s*$/.test(v.seed) || !Number.isSafeInteger(Number(v.seed))) {
      throw new UsageError(`${s("seed")}: "${v.seed}" is not a whole number`);
    }
    distill.seed = Number(v.seed);
  }
  if (v["distill-loss"] !== undefined) {
    distill.loss = oneOf(
      s("distill-loss"),
      v["distill-loss"],
      ["kl", "cosine", "mse", "pooled"] as const,
    );
  }
  if (v.temperature !== undefined) {
    distill.temperature = parsePositive(s("temperature"), v.temperature);
  }
  if (v["distill-hidden"]) distill.hidden = true;
  if (v["distill-hidden-weight"] !== undefined) {
    if (!v["distill-hidden"]) {
      throw new UsageError(`${s("distill-hidden-weight")} goes with ${s("distill-hidden")}`);
    }
    distill.hiddenWeight = parsePositive(s("distill-hidden-weight"), v["distill-hidden-weight"]);
  }
  if (v["distill-embeddings"]) distill.trainEmbeddings = true;
  options.distill = distill;
}

const TARGET_ONLY = [
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
] as const;

/**
 * The target of a run (`target-params`, `target-macs`, `target-speedup`) with its settings, or
 * undefined; completes `options` with what a target run adds (embedding, separate Q/K and V,
 * latency η).
 */
export function targetFrom(
  v: OptionValues,
  options: RunOptions,
  surface: Surface = "cli",
): TargetRequest | undefined {
  const s = spelling(surface);
  let target: TargetRequest | undefined;
  const targets = (["target-params", "target-macs", "target-speedup"] as const).filter((k) =>
    v[k] !== undefined
  );
  if (targets.length > 1) {
    throw new UsageError(`${targets.map((t) => s(t)).join(" and ")}: give one target`);
  }
  if (targets.length === 1) {
    // A head ratio of 0 is allowed: it keeps attention out of the target.
    const headRatio = v["head-pruning-ratio"];
    if (v["pruning-ratio"] !== undefined || (headRatio !== undefined && Number(headRatio) !== 0)) {
      throw new UsageError(
        `${s(targets[0])} decides how much to prune: drop ${s("pruning-ratio")} / ${
          s("head-pruning-ratio")
        } (${s("head-pruning-ratio")} 0 keeps attention out of the target)`,
      );
    }
    target = {
      budgetSeconds: v["profile-budget"] === undefined
        ? 60
        : parsePositive(s("profile-budget"), v["profile-budget"]),
      batch: v["latency-batch"] === undefined
        ? 1
        : parsePositiveInt(s("latency-batch"), v["latency-batch"]),
      cacheDir: v["latency-cache"],
      ...(v["latency-threads"] !== undefined
        ? { threads: parsePositiveInt(s("latency-threads"), v["latency-threads"]) }
        : {}),
      ...(v["latency-runtime"] !== undefined
        ? {
          runtime: oneOf(
            s("latency-runtime"),
            v["latency-runtime"],
            optionSpec("latency-runtime")!.choices as readonly LatencyRuntime[],
          ),
        }
        : {}),
      ...(v.steps !== undefined ? { steps: parsePositiveInt(s("steps"), v.steps) } : {}),
      ...(v["min-keep"] !== undefined ? { minKeep: parseRatio(s("min-keep"), v["min-keep"]) } : {}),
      ...(v["check-rounds"] !== undefined
        ? { rounds: parsePositiveInt(s("check-rounds"), v["check-rounds"]) }
        : {}),
      ...(v["latency-clock"] !== undefined
        ? {
          clock: oneOf(
            s("latency-clock"),
            v["latency-clock"],
            optionSpec("latency-clock")!.choices as readonly LatencyClock[],
          ),
        }
        : {}),
    };
    if (v["target-params"] !== undefined) {
      target.params = parseAmount(s("target-params"), v["target-params"]);
    }
    if (v["target-macs"] !== undefined) {
      target.macs = parseAmount(s("target-macs"), v["target-macs"]);
    }
    if (v["target-speedup"] !== undefined) {
      target.speedup = parsePositive(s("target-speedup"), v["target-speedup"]);
      if (target.speedup <= 1) throw new UsageError(`${s("target-speedup")}: must be above 1`);
    }
    if (v["prune-embedding"]) options.pruneEmbedding = true;
    if (v["separate-qk-v"]) {
      if (!options.pruneHeadDims) {
        throw new UsageError(`${s("separate-qk-v")} goes with ${s("prune-head-dims")}`);
      }
      options.separateQkV = true;
    }
  } else {
    for (const k of TARGET_ONLY) {
      if (v[k] !== undefined) {
        throw new UsageError(
          `${s(k)} goes with a ${surface === "cli" ? "--target-…" : "target-…"} option`,
        );
      }
    }
  }
  for (const k of ["check-rounds", "latency-clock"] as const) {
    if (v[k] !== undefined && !target?.speedup) {
      throw new UsageError(`${s(k)} goes with ${s("target-speedup")}`);
    }
  }
  if (target?.clock === "cpu" && target.runtime !== "wasm" && target.threads !== 1) {
    throw new UsageError(
      target.runtime === "webgpu"
        ? `${s("latency-clock")} cpu: WebGPU work is not CPU time`
        : `${s("latency-clock")} cpu goes with ${s("latency-threads")} 1 (CPU time adds up over ` +
          `threads)`,
    );
  }
  if (v["latency-eta"] !== undefined) {
    if (!target?.speedup) {
      throw new UsageError(`${s("latency-eta")} goes with ${s("target-speedup")}`);
    }
    options.latencyEta = parsePositive(s("latency-eta"), v["latency-eta"]);
  }
  return target;
}

/**
 * Values from a query string (`prune-num-heads&head-pruning-ratio=0.5`) or form fields: names
 * must be options this surface offers; a flag is given bare or as `true`/`false` (also `1`/`0`);
 * a repeatable option may be given more than once.
 *
 * @example valuesFromParams(new URLSearchParams("prune-num-heads&head-pruning-ratio=0.5"), "service")
 */
export function valuesFromParams(
  params: Iterable<[string, string]>,
  surface: Exclude<Surface, "cli">,
): OptionValues {
  const out: Record<string, string | boolean | string[]> = {};
  for (const [name, value] of params) {
    const spec = (OPTIONS as readonly OptionSpec[]).find((o) => o.name === name);
    if (!spec) {
      const near = (OPTIONS as readonly OptionSpec[]).find((o) =>
        o.name === name.replace(/^-+/, "") || o.name === name.replace(/_/g, "-")
      );
      throw new UsageError(
        `unknown option "${name}"` + (near ? ` (did you mean "${near.name}"?)` : ""),
      );
    }
    if (!spec.surfaces.includes(surface)) {
      throw new UsageError(
        `${name} is an option of the command line only (it reads or writes files, or needs ` +
          `onnxruntime)`,
      );
    }
    if (spec.kind === "flag") {
      const v = value.trim().toLowerCase();
      if (!["", "true", "1", "false", "0"].includes(v)) {
        throw new UsageError(`${name} is a flag: give it bare or as ${name}=true / ${name}=false`);
      }
      if (Object.hasOwn(out, name)) throw new UsageError(`${name} is given twice`);
      out[name] = v === "" || v === "true" || v === "1";
      continue;
    }
    if (spec.multiple) {
      ((out[name] ??= []) as string[]).push(value);
      continue;
    }
    if (Object.hasOwn(out, name)) throw new UsageError(`${name} is given twice`);
    if (value.trim() === "") throw new UsageError(`${name} needs a value (${name}=…)`);
    out[name] = value;
  }
  // A flag given as false is as if not given.
  for (const [k, v] of Object.entries(out)) if (v === false) delete out[k];
  return out as OptionValues;
}
