/**
 * One pruning run as the service and the page ask for it: model bytes and option values (query
 * parameters or form fields, checked as the command line checks its own) in, the pruned model's
 * bytes and the report out. No file system, no onnxruntime: the result is checked from the graph.
 *
 * @module
 */
import { decodeModel, encodeModel } from "./onnx/model_io.ts";
import { pruneModel, type RunOptions } from "./prune.ts";
import { pruneToTarget } from "./target.ts";
import type { PruneReport } from "./report.ts";
import type { OptionValues, Surface } from "./option_table.ts";
import { pruneOptionsFrom, targetFrom } from "./option_values.ts";

/** What a request asks beyond its option values. */
export interface PruneRequestOptions {
  /** The report only (the service's `/report`): nothing is cut or encoded. */
  dryRun?: boolean;
  /** Library options the front door sets itself (e.g. the compute core). */
  extra?: RunOptions;
}

/** The result of {@link pruneRequest}: the pruned bytes (absent for a dry run) and the report. */
export interface PruneRequestResult {
  bytes?: Uint8Array;
  report: PruneReport;
}

/**
 * The library's options for a request's values; throws `UsageError` naming the option.
 *
 * @example requestOptions({ "prune-num-heads": true, "head-pruning-ratio": "0.5" }, "service")
 */
export function requestOptions(
  values: OptionValues,
  surface: Exclude<Surface, "cli">,
): { options: RunOptions; target: ReturnType<typeof targetFrom> } {
  const options = pruneOptionsFrom(values, surface);
  const target = targetFrom(values, options, surface);
  // onnxruntime is not loaded here: the result is checked from the graph alone.
  options.loadCheck = false;
  return { options, target };
}

/**
 * Prunes `bytes` with the options of a request (`pruneOptionsFrom` rules).
 *
 * @example
 * ```ts
 * const { bytes, report } = await pruneRequest(model, { "pruning-ratio": "0.3" }, "service");
 * ```
 */
export async function pruneRequest(
  bytes: Uint8Array,
  values: OptionValues,
  surface: Exclude<Surface, "cli">,
  request: PruneRequestOptions = {},
): Promise<PruneRequestResult> {
  const { options, target } = requestOptions(values, surface);
  Object.assign(options, request.extra);
  const model = decodeModel(bytes, "the request body");
  if (target) {
    // A target is reached by pruning in steps: a dry run prunes too and keeps only the report.
    const result = await pruneToTarget(model, target, options);
    result.report.target = result.target;
    return {
      ...(request.dryRun ? {} : { bytes: encodeModel(result.model) }),
      report: result.report,
    };
  }
  const result = await pruneModel(model, { ...options, dryRun: !!request.dryRun });
  return {
    ...(request.dryRun ? {} : { bytes: encodeModel(result.model) }),
    report: result.report,
  };
}
