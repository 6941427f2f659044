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
import { permissionMessage, permitted, requirePermission } from "./permissions.ts";
import { loadCalibration } from "./calibration/inputs.ts";
import { architectureChart } from "./chart.ts";
import { pruneToTarget } from "./target.ts";
import { createLatencyModel, type LatencyModel, targetScope } from "./latency/model.ts";
import { ProgressBar } from "./calibration/progress.ts";
import type { RunOptions } from "./prune.ts";
import { formatReport } from "./format_report.ts";
import { readModelFile, writeModelFile } from "./onnx/model_io.ts";
import { tempPath, trackTemp, untrackTemp } from "./onnx/temp_files.ts";
import type { ModelProto } from "./onnx/proto.ts";
import type { PruneReport } from "./report.ts";
import { NOTHING_PRUNED, pruneModel } from "./prune.ts";
import { optionHelp, type OptionValues, parseArgsOptions } from "./option_table.ts";
import {
  parsePositiveInt,
  pruneOptionsFrom,
  targetFrom,
  type TargetRequest,
  UsageError,
} from "./option_values.ts";
import { reportPage } from "./report/html.ts";

/** A bad command line: reported as `error: …` with exit code 2. */
export { UsageError };

/** Usage text printed by `--help`. */
export const HELP = `prune-vit ${denoJson.version} — structured pruning of transformer ONNX models

usage: deno run -A mod.ts [options] <model.onnx>

Removes attention heads (grouped-query aware), per-head dims, MLP hidden channels and the
embedding width, and writes a smaller dense ONNX model that onnxruntime runs.

options:
${optionHelp()}

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
  /** Where to write the report as a self-contained HTML page (`--report`). */
  report?: string;
  /** Pruning to a target (`--target-*`), with the latency model's settings. */
  target?: TargetRequest;
}

const OPTION_SPEC = parseArgsOptions();

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
  const v = parsed.values as OptionValues;
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

  if (v["external-data"] && v["inline-data"]) {
    throw new UsageError("choose one of --external-data and --inline-data");
  }
  const options = pruneOptionsFrom(v, "cli");

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
  const target = targetFrom(v, options, "cli");
  for (const key of ["chart", "report"] as const) {
    const file = v[key];
    if (file === undefined) continue;
    if (file === "") throw new UsageError(`--${key}: empty path`);
    if (path.resolve(file) === path.resolve(input)) {
      throw new UsageError(`--${key}: ${file} is the input model; refusing to overwrite it`);
    }
    if (key === "report" && !v["dry-run"] && path.resolve(file) === path.resolve(output)) {
      throw new UsageError(`--${key}: ${file} is the output model`);
    }
  }
  return {
    input,
    output,
    options,
    chart: v.chart,
    report: v.report,
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

/**
 * Writes a text file to a temporary file beside it, to be renamed into place (`commit`) once
 * the model is written, or removed (`abort`): a failed write stops the run before the model is
 * written, so a failed run leaves nothing behind.
 */
async function stageText(
  file: string,
  text: string,
): Promise<{ commit(): Promise<void>; abort(): Promise<void> }> {
  const temp = tempPath(file);
  trackTemp(temp);
  const fail = async (e: unknown) => {
    await Deno.remove(temp).catch(() => {});
    untrackTemp(temp);
    const why = e instanceof Error ? e.message : String(e);
    return new PruneError("output-dir", `cannot write ${file}: ${why}`);
  };
  try {
    await Deno.writeTextFile(temp, text);
  } catch (e) {
    throw await fail(e);
  }
  return {
    async commit() {
      try {
        await Deno.rename(temp, file);
        untrackTemp(temp);
      } catch (e) {
        throw await fail(e);
      }
    },
    async abort() {
      await Deno.remove(temp).catch(() => {});
      untrackTemp(temp);
    },
  };
}

/** The permissions a run needs for its files, asked for before any work (see permissions.ts). */
function requireFilePermissions(cli: CliArgs): void {
  requirePermission({ name: "read", path: cli.input }, `reading the model ${cli.input}`);
  const outputs = [
    ...(cli.dryRun ? [] : [[cli.output, "the output"]]),
    ...(cli.chart ? [[cli.chart, "the chart"]] : []),
    ...(cli.report ? [[cli.report, "the report"]] : []),
  ];
  for (const [file, what] of outputs) {
    const dir = path.dirname(path.resolve(file));
    // The folder is checked and cleaned of interrupted runs' temporary files, then written.
    requirePermission({ name: "read", path: dir }, `checking the folder of ${what} ${file}`);
    requirePermission({ name: "write", path: dir }, `writing ${what} ${file}`);
  }
  for (const p of [...cli.calibration.paths, ...cli.evaluate]) {
    requirePermission({ name: "read", path: p }, `reading the data ${p}`);
  }
}

/** Checks a folder to write into before any work: it exists and is a folder. */
async function checkFolder(file: string, what: string): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  let stat;
  try {
    stat = await Deno.stat(dir);
  } catch {
    throw new PruneError("output-dir", `${what} folder ${path.dirname(file)} does not exist`);
  }
  if (!stat.isDirectory) {
    throw new PruneError("output-dir", `${what} folder ${path.dirname(file)} is not a folder`);
  }
  if ((await Deno.stat(file).catch(() => null))?.isDirectory) {
    throw new PruneError("output-dir", `${what} ${file} is a folder`);
  }
}

/** Checks the output location before any work: folder exists, output is not the input. */
async function checkOutput(input: string, output: string): Promise<void> {
  await checkFolder(output, "output");
  const [ri, ro] = await Promise.all([realOrNull(input), realOrNull(output)]);
  if (ri !== null && ri === ro) {
    throw new PruneError(
      "output-is-input",
      `output ${output} is the input model; refusing to overwrite it`,
    );
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
  // Asked only where granted: a run without --allow-env must not prompt for it.
  if (!permitted({ name: "env", variable: "PRUNE_VIT_DEBUG" })) return false;
  return Deno.env.get("PRUNE_VIT_DEBUG") === "1";
}

function printError(e: unknown, internal: boolean): void {
  const err = e instanceof Error ? e : new Error(String(e));
  // A permission Deno refused (Deno names the access and the flag): the user's to give.
  if (permissionMessage(e)) internal = false;
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

  let chart: Awaited<ReturnType<typeof stageText>> | undefined;
  let page: Awaited<ReturnType<typeof stageText>> | undefined;
  try {
    requireFilePermissions(cli);
    if (!cli.dryRun) await checkOutput(cli.input, cli.output);
    if (cli.chart) await checkFolder(cli.chart, "chart");
    if (cli.report) await checkFolder(cli.report, "report");
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
    let segmentRuns: ProgressBar | undefined;
    cli.options.onSegmentProgress = (done, total) => {
      if (done === 1) {
        segmentRuns = new ProgressBar(total, {
          quiet: cli.quiet || cli.json,
          unit: "segment runs (the statistics pass, one segment's session at a time)",
        });
      }
      segmentRuns?.update(done);
    };
    let training: ProgressBar | undefined;
    if (cli.options.distill) {
      cli.options.distill.onProgress = (step, steps, loss) => {
        training ??= new ProgressBar(steps, {
          quiet: cli.quiet || cli.json,
          unit: "distillation steps",
        });
        training.update(step, `loss ${loss.toPrecision(4)}`);
      };
    }
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
    // The chart and the HTML report are written first, as temporary files: if one cannot be,
    // no model is written.
    if (cli.chart) {
      chart = await stageText(cli.chart, architectureChart(report, path.basename(cli.output)));
    }
    if (cli.report) {
      page = await stageText(
        cli.report,
        reportPage(report, {
          title: path.basename(cli.output),
          input: path.basename(cli.input),
          ...(cli.dryRun ? { dryRun: true } : { output: cli.output }),
        }),
      );
    }
    if (!cli.dryRun) {
      const { leftovers } = await writeModelFile(pruned, cli.output, {
        inputPath: cli.input,
        ...(cli.externalData !== undefined ? { externalData: cli.externalData } : {}),
      });
      if (!cli.quiet) reportLeftovers(leftovers);
    }
    await chart?.commit();
    chart = undefined;
    await page?.commit();
    page = undefined;
    const nothing = report.notes.find((n) => n.startsWith(NOTHING_PRUNED));
    if (nothing && !cli.dryRun) {
      // Said on stderr too: a copy of the input is rarely what was meant (stdout may be JSON).
      console.error(`warning: ${nothing}; ${cli.output} is a copy of the input`);
    }
    if (cli.json) {
      console.log(JSON.stringify(report, null, 2));
    } else if (!cli.quiet) {
      console.log(formatReport(report, { output: cli.output, dryRun: cli.dryRun }));
    }
    return 0;
  } catch (e) {
    await chart?.abort();
    await page?.abort();
    if (e instanceof PruneError) {
      printError(e, false);
      return 1;
    }
    printError(e, true);
    return 1;
  }
}
