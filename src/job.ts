/**
 * A pruning job as a message: what the page and the service send to the worker that prunes, and
 * what comes back. The worker (`web/src/worker.ts`, bundled into the page and the service) only
 * wires messages to {@link runJob}; a job never throws, its error comes back as a value.
 *
 * @module
 */
import { PruneError } from "./errors.ts";
import type { OptionValues } from "./option_table.ts";
import { UsageError } from "./option_values.ts";
import { pruneRequest } from "./prune_request.ts";
import type { PruneReport } from "./report.ts";

/** A job: prune the model (`bytes`, or the one kept from an earlier job) with these values. */
export interface JobRequest {
  id: number;
  /** The model; absent: the model an earlier job of this worker kept. */
  bytes?: Uint8Array;
  /** Keep the model for later jobs (the page prunes one model many times). */
  keep?: boolean;
  values: OptionValues;
  surface: "service" | "page";
  /** The report only. */
  dryRun?: boolean;
}

/** Why a job failed: a bad option, a model the tool refuses (with the library's code), or a
 * defect. */
export interface JobError {
  kind: "usage" | "model" | "internal";
  code: string;
  message: string;
}

/** A job's answer. */
export type JobReply =
  | { id: number; ok: true; bytes?: Uint8Array; report: PruneReport; ms: number }
  | { id: number; ok: false; error: JobError };

/** What a worker keeps between jobs. */
export interface JobState {
  model?: Uint8Array;
}

/** Signs that onnxruntime could not be loaded (a page has none, the service cannot read its
 * wasm): the model needed it, which is said as such rather than as a defect. */
const NO_ONNXRUNTIME =
  /Failed to resolve module specifier|Cannot find module|Failed to fetch dynamically imported module|Importing a module script failed|no available backend|Requires read access/;

/** The error as a value that crosses to the other side of a worker. */
export function jobError(e: unknown): JobError {
  if (e instanceof UsageError) return { kind: "usage", code: "bad-option", message: e.message };
  const text = e instanceof Error ? e.message : String(e);
  // The library says a feature needs onnxruntime where permissions keep it out: the same case.
  const kept = e instanceof PruneError && e.code === "permission" && /needs onnxruntime/.test(text);
  if (kept || NO_ONNXRUNTIME.test(text)) {
    return {
      kind: "model",
      code: "needs-onnxruntime",
      message: "the shapes of this model's tensors cannot be worked out from the graph alone, " +
        "and onnxruntime, which would run it to learn them, is not loaded here: prune it with " +
        `the command line (onnxruntime said: ${text.split("\n")[0].slice(0, 200)})`,
    };
  }
  if (e instanceof PruneError) {
    return {
      kind: e.code === "bad-option" ? "usage" : e.code === "internal" ? "internal" : "model",
      code: e.code,
      message: e.message,
    };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { kind: "internal", code: "internal", message: `internal error: ${message}` };
}

/**
 * Runs one job; the reply's buffers are listed for transfer.
 *
 * @example const { reply } = await runJob({}, { id: 1, bytes, values: {}, surface: "page", dryRun: true });
 */
export async function runJob(
  state: JobState,
  request: JobRequest,
): Promise<{ reply: JobReply; transfer: ArrayBuffer[] }> {
  const start = performance.now();
  try {
    const bytes = request.bytes ?? state.model;
    if (!bytes) {
      throw new UsageError("no model: send the model's bytes first");
    }
    state.model = request.keep ? bytes : undefined;
    // Decoding makes views into the bytes and pruning replaces tensors rather than writing into
    // them, so a kept model stays as given.
    const result = await pruneRequest(bytes, request.values, request.surface, {
      dryRun: request.dryRun,
    });
    const out = result.bytes;
    return {
      reply: {
        id: request.id,
        ok: true,
        ...(out ? { bytes: out } : {}),
        report: result.report,
        ms: performance.now() - start,
      },
      transfer: out && out.byteLength === out.buffer.byteLength ? [out.buffer as ArrayBuffer] : [],
    };
  } catch (e) {
    return { reply: { id: request.id, ok: false, error: jobError(e) }, transfer: [] };
  }
}
