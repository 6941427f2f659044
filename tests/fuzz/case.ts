/**
 * One case of the targeted strategy: mutate a seed model, prune it in the case's mode, and run
 * what came out in onnxruntime. A case ends pruned, refused with a PruneError, or in a finding
 * (any other exception, or an output onnxruntime rejects); hangs and crashes are caught around
 * it by the watchdog.
 */
import { decodeModel } from "../../src/onnx/model_io.ts";
import { PruneError } from "../../src/errors.ts";
import { pruneModel } from "../../src/prune.ts";
import { probeTensors } from "../../src/runtime/probe.ts";
import { runOutputs, syntheticFeeds } from "../../src/verify.ts";
import type { ModelProto } from "../../src/onnx/proto.ts";
import type { ComputeCore } from "../../src/core/mod.ts";
import { caseMode, mutateTargeted } from "./targeted.ts";

/** How a case ended. "skipped": the mutation found nothing to change (not an input). */
export type CaseKind = "pruned" | "refused" | "finding" | "skipped";

/** The outcome of one case. */
export interface CaseOutcome {
  kind: CaseKind;
  mutation: string;
  mode: string;
  message?: string;
}

/** Runs case `n` of the targeted strategy on `bytes`; `started` hears the mutation first. */
export async function targetedCase(
  bytes: Uint8Array,
  seed: number,
  n: number,
  setup: {
    core: ComputeCore;
    dimValues?: Record<string, number>;
    started?: (mutation: string, mode: string) => void;
  },
): Promise<CaseOutcome> {
  const [mode, options] = caseMode(seed, n);
  let mutated: Uint8Array, mutation: string;
  try {
    [mutated, mutation] = mutateTargeted(bytes, seed, n);
  } catch (e) {
    // An edit the encoder cannot write is not an input anyone can hand the pruner.
    return { kind: "skipped", mode, mutation: `not encodable: ${e}` };
  }
  if (mutation === "unchanged") return { kind: "skipped", mode, mutation };
  setup.started?.(mutation, mode);
  let pruned;
  try {
    const model = decodeModel(mutated, "fuzz.onnx");
    pruned = await pruneModel(model, { ...options, dimValues: setup.dimValues, core: setup.core });
  } catch (e) {
    if (e instanceof PruneError) return { kind: "refused", mode, mutation, message: e.message };
    const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    return { kind: "finding", mode, mutation, message: `not a PruneError: ${what}` };
  }
  const rejected = await runsInOrt(pruned.model, setup.dimValues);
  if (rejected) {
    return {
      kind: "finding",
      mode,
      mutation,
      message: `onnxruntime rejects the output: ${rejected}`,
    };
  }
  return { kind: "pruned", mode, mutation };
}

/** Runs a model in onnxruntime as a user would (its own outputs, synthetic inputs) and, where
 * that cannot be fed (a string input), as the probe does; the error where neither runs. */
async function runsInOrt(
  model: ModelProto,
  dimValues?: Record<string, number>,
): Promise<string | undefined> {
  const message = (e: unknown) => e instanceof Error ? e.message : String(e);
  try {
    await runOutputs(model, await syntheticFeeds(model, { dimValues }));
    return undefined;
  } catch (e) {
    try {
      await probeTensors(model, { method: "run", dimValues });
      return undefined;
    } catch {
      return message(e);
    }
  }
}
