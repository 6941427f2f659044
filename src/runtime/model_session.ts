/**
 * onnxruntime sessions for models held in memory, whatever their size. A model under protobuf's
 * 2 GiB limit is handed over as one encoded buffer; a larger one (a 1B-parameter language model
 * in float16) cannot be encoded that way, so it is written to a temporary folder with its weights
 * in an external data file, the session is created from that file, and the folder is removed
 * (onnxruntime has read, or mapped, the weights by then).
 *
 * @module
 */
import type { InferenceSession } from "onnxruntime-common";
import type { ModelProto } from "../onnx/proto.ts";
import { encodeModel, estimateSize, writeModelFile } from "../onnx/model_io.ts";
import { PruneError } from "../errors.ts";
import { createSession, loadOrt, ortBackendName, type OrtSession } from "./ort.ts";
import { trackTemp, untrackTemp } from "../onnx/temp_files.ts";

/** Tensor bytes above which a model goes through a file (protobuf's limit, less room for the
 * graph itself). */
export const ONE_BUFFER_LIMIT = 2 ** 31 - 64 * 2 ** 20;

/**
 * A session for `model`: from its encoded bytes when its tensors hold under `limit` bytes, else
 * from a temporary file with external data (needs write access to the temporary folder).
 *
 * @example
 * ```ts
 * import { decodeModel } from "../onnx/model_io.ts";
 * const model = decodeModel(await Deno.readFile("llama.onnx"));
 * const session = await createModelSession(model, {}, "calibration");
 * ```
 */
export async function createModelSession(
  model: ModelProto,
  options: InferenceSession.SessionOptions = {},
  purpose?: string,
  limit = ONE_BUFFER_LIMIT,
): Promise<OrtSession> {
  if (estimateSize(model) < limit) return await createSession(encodeModel(model), options, purpose);
  await loadOrt(purpose);
  if (ortBackendName() !== "node") {
    throw new PruneError(
      "too-large",
      `${
        purpose ?? "this run"
      } needs the model in onnxruntime, and a model over protobuf's 2 GiB ` +
        `limit only goes to onnxruntime-node (from a file with external data); this run uses ` +
        `onnxruntime-web: allow it to load onnxruntime-node (--allow-ffi)`,
    );
  }
  let dir: string | undefined;
  try {
    dir = await Deno.makeTempDir({ prefix: "prune_vit_session_" });
    // A stopped run (SIGINT, SIGTERM) removes the copy too: it is as large as the model.
    trackTemp(dir);
    const path = `${dir}/model.onnx`;
    await writeModelFile(model, path, { externalData: { location: "model.onnx.data" } });
    return await createSession(path, options, purpose);
  } catch (e) {
    if (!(e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable)) {
      throw e;
    }
    throw new PruneError(
      "permission",
      `${purpose ?? "this run"} needs the model in onnxruntime, and a model over 2 GiB goes ` +
        `there through a temporary copy, which could not be written (${
          e instanceof Error ? e.message : e
        }); allow reading and writing the temporary folder (--allow-read, --allow-write; ` +
        `TMPDIR chooses it)`,
    );
  } finally {
    if (dir !== undefined) {
      untrackTemp(dir);
      const made = dir;
      await Deno.remove(made, { recursive: true }).catch((e) =>
        console.warn(
          `could not remove the temporary copy ${made}: ${e instanceof Error ? e.message : e}`,
        )
      );
    }
  }
}

/** What keeps the original as one buffer in a run with these options, for messages. */
export function originalNeededBy(options: { distill?: unknown; evaluation?: unknown }): string {
  return [
    options.distill ? "distillation (--distill-steps)" : "",
    options.evaluation ? "evaluation (--evaluate)" : "",
  ].filter((s) => s).join(" and ");
}

/**
 * The original model's bytes, kept to compare the pruned model with (distillation's teacher,
 * the evaluation's reference). Refuses a model over protobuf's limit naming what needs it, where
 * encoding would only say the model is too large.
 *
 * @example
 * ```ts
 * import { decodeModel } from "../onnx/model_io.ts";
 * const model = decodeModel(await Deno.readFile("vit.onnx"));
 * const teacher = originalAsBuffer(model, "distillation (--distill-steps)");
 * ```
 */
export function originalAsBuffer(
  model: ModelProto,
  needs: string,
  limit = ONE_BUFFER_LIMIT,
): Uint8Array {
  const size = estimateSize(model);
  if (size >= limit) {
    throw new PruneError(
      "too-large",
      `${needs} keeps the original model as one buffer, which holds at most ` +
        `${(limit / 2 ** 30).toFixed(2)} GiB of tensors, and this model's hold ` +
        `${(size / 2 ** 30).toFixed(2)} GiB: run without it (models over protobuf's 2 GiB ` +
        `limit are pruned, with calibration too, but not yet distilled or evaluated)`,
    );
  }
  return encodeModel(model);
}
