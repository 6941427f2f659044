/**
 * One export × one pruning mode, checked against the masking oracle and classified: the
 * outcome the zoo's table prints and its tests expect (`tests/fixtures/zoo/expected.json`).
 *
 * @module
 */
import { PruneError } from "../../src/errors.ts";
import { decodeModel } from "../../src/onnx/model_io.ts";
import type { GraphProto, ModelProto, NodeProto } from "../../src/onnx/proto.ts";
import type { RunOptions } from "../../src/prune.ts";
import type { PruneReport } from "../../src/report.ts";
import { maskingCheck, runOutputs, syntheticFeeds } from "../../src/verify.ts";

/** The table's columns: the options of each mode. */
export const MODES: Record<string, RunOptions> = {
  heads: { pruneNumHeads: true, headPruningRatio: 0.5 },
  dims: { pruneHeadDims: true, headPruningRatio: 0.5 },
  qkv: { pruneHeadDims: true, qkPruningRatio: 0.25, vPruningRatio: 0.5 },
  mlp: { pruningRatio: 0.5 },
  embedding: { embeddingPruningRatio: 0.25 },
};

/** Column titles of {@link MODES}. */
export const MODE_TITLES: Record<string, string> = {
  heads: "heads",
  dims: "head dims",
  qkv: "Q/K≠V",
  mlp: "MLP",
  embedding: "embedding",
};

/** What a cell's run ended in. "exact", "refused" and "runs" (pruned, not mask-exact by
 * construction: embedding width under a LayerNorm, re-quantized blocks) are the expected
 * outcomes; the others are failures: a wrong model, a vacuous check, nothing pruned without a
 * word, a crash. */
export type Outcome = "exact" | "refused" | "runs" | "wrong" | "vacuous" | "unpruned" | "error";

/** The outcome of one export × mode, with what backs it. */
export interface Cell {
  outcome: Outcome;
  /** Largest |pruned − masked| over the compared outputs. */
  difference?: number;
  /** Largest |masked − original|. */
  effect?: number;
  /** Tolerance the difference was held to (float16 outputs: looser). */
  tolerance?: number;
  /** Blocks of the mode's kind pruned, of those found (a partial prune says which stayed). */
  blocks?: { pruned: number; found: number };
  params?: { before: number; after: number };
  /** Refusals: the message quotes a node, tensor or graph input/output of the model. */
  namesNode?: boolean;
  /** Q/K≠V: only V dims went (Q/K dims kept, e.g. under RoPE; `skipped` says why). */
  vOnly?: boolean;
  /** Refusals and errors: the message; otherwise the groups skipped and the notes. */
  message?: string;
  skipped?: string[];
  notes?: string[];
  /** Inputs whose shape the pruning changed (fed zeros), outputs whose shape it changed (not
   * compared): a KV cache. */
  zeroedInputs?: string[];
  reshapedOutputs?: string[];
}

const TOLERANCE = 1e-4, TOLERANCE_F16 = 2e-2, MIN_EFFECT = 1e-5;
/** Re-quantized blocks: |pruned − masked| below this fraction of |masked − original|. */
const REQUANTIZED = 0.15;

/** Ops that normalise over the embedding width: removing channels is not zeroing them there. */
const NORMALISING =
  /^(LayerNormalization|SimplifiedLayerNormalization|SkipLayerNormalization|SkipSimplifiedLayerNormalization|RMSNormalization|ReduceMean|ReduceL2)$/;

/** Blocks of the mode's kind that it shrank, out of the groups of that kind found. */
function blockCount(mode: string, report: PruneReport): { pruned: number; found: number } {
  const kind = mode === "mlp" ? "mlp" : mode === "embedding" ? "embedding" : "attention";
  const found = report.groups.filter((g) => g.kind === kind).length;
  const pruned = report.blocks.filter((b) => {
    if (b.kind !== kind) return false;
    if (b.kind === "attention") {
      if (mode === "heads") return b.heads.after < b.heads.before;
      if (mode === "qkv") {
        return b.headDim.after < b.headDim.before ||
          (b.vHeadDim !== undefined && b.vHeadDim.after < b.vHeadDim.before);
      }
      return b.headDim.after < b.headDim.before;
    }
    return b.channels.after < b.channels.before;
  }).length;
  return { pruned, found };
}

/** Does onnxruntime run the model on synthetic inputs? Returns the error message if not. */
async function runs(
  model: ModelProto,
  dimValues?: Record<string, number>,
): Promise<string | undefined> {
  try {
    await runOutputs(model, await syntheticFeeds(model, { dimValues }));
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** The nodes of a graph and of the bodies of its If / Loop / Scan nodes. */
function allNodes(g: GraphProto): NodeProto[] {
  return (g.node ?? []).flatMap((n) => [
    n,
    ...(n.attribute ?? []).flatMap((a) => [...(a.g ? [a.g] : []), ...(a.graphs ?? [])])
      .flatMap(allNodes),
  ]);
}

/** Does `message` quote (in "…") a node, node output, weight or graph input/output of the model
 * (or a node derived from one, named with a suffix)? */
export function namesNode(bytes: Uint8Array, message: string): boolean {
  const g = decodeModel(bytes).graph!;
  const names = new Set([
    ...allNodes(g).flatMap((n) => [n.name ?? "", ...(n.output ?? [])]),
    ...(g.initializer ?? []).map((t) => t.name ?? ""),
    ...(g.input ?? []).map((v) => v.name ?? ""),
    ...(g.output ?? []).map((v) => v.name ?? ""),
  ]);
  // A node the tool derived ("…/qkv/MatMul_q" from splitting a fused qkv) names its origin.
  const known = (q: string): boolean =>
    names.has(q) || (q.includes("_") && known(q.slice(0, q.lastIndexOf("_"))));
  return [...message.matchAll(/"([^"]+)"/g)].some((m) => known(m[1]));
}

/** Prunes `bytes` in `mode` and classifies the result (never throws for the model's sake). */
export async function checkCell(
  bytes: Uint8Array,
  mode: string,
  extra: RunOptions = {},
): Promise<Cell> {
  const options = { ...MODES[mode], ...extra };
  let check;
  try {
    check = await maskingCheck(bytes, options);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (!(e instanceof PruneError)) return { outcome: "error", message };
    return { outcome: "refused", message, namesNode: namesNode(bytes, message) };
  }
  const { report } = check.pruned;
  const tolerance = check.float16 ? TOLERANCE_F16 : TOLERANCE;
  const cell: Cell = {
    outcome: "exact",
    difference: check.difference,
    effect: check.effect,
    tolerance,
    blocks: blockCount(mode, report),
    vOnly: mode === "qkv" &&
      !report.blocks.some((b) => b.kind === "attention" && b.headDim.after < b.headDim.before),
    params: report.params,
    skipped: report.skipped.map((s) => `${s.name}: ${s.reason}`),
    notes: report.notes,
    zeroedInputs: check.zeroedInputs,
    reshapedOutputs: check.outputs.filter((o) => o.reshaped).map((o) => o.name),
  };
  // NaN from the reference side makes the oracle unusable: an error, not a wrong prune.
  const reference = check.outputs.find((o) => o.nonFinite.some((w) => w !== "pruned"));
  if (reference) {
    const which = reference.nonFinite.includes("original") ? "original" : "masked";
    cell.outcome = "error";
    cell.message = `the ${which} model gives NaN or Inf in output "${reference.name}"`;
  } else if (report.params.after >= report.params.before || cell.blocks!.pruned === 0) {
    cell.outcome = "unpruned";
  } else if (!(check.difference <= tolerance)) {
    // Not mask-exact by construction: the embedding width under a normalisation over it (the
    // pruned model must still run), or kept channels that are not whole quantization blocks
    // re-quantized (the report says so; within the quantization grid's error, a fraction of
    // what the removed channels did). Anything else is a wrong model.
    const normalised = mode === "embedding" &&
      allNodes(check.pruned.model.graph!).some((n) => NORMALISING.test(n.opType ?? ""));
    const requantized = report.notes.some((n) => /re-?quantiz/i.test(n));
    if (normalised) {
      const failed = await runs(check.pruned.model, options.dimValues);
      cell.outcome = failed ? "error" : "runs";
      cell.message = failed ?? "pruned, not mask-exact (LayerNorm)";
    } else if (requantized && check.difference < REQUANTIZED * check.effect) {
      cell.outcome = "runs";
      cell.message = `pruned, re-quantized (not mask-exact: ${check.difference.toExponential(0)})`;
    } else cell.outcome = "wrong";
  } else if (!(check.effect > MIN_EFFECT)) cell.outcome = "vacuous";
  return cell;
}

/** The first sentence of a message, cut to `max` characters, for a table cell. */
export function shorten(message: string, max = 100): string {
  const first = message.replace(/\s+/g, " ").split(/(?<=[.;])\s/)[0];
  return first.length > max ? first.slice(0, max - 1) + "…" : first;
}

/** A table cell: ✓ with |diff|, the refusal shortened, or ✗ with what went wrong. */
export function formatCell(cell: Cell): string {
  return cellText(cell).replaceAll("|", "\\|");
}

function cellText(cell: Cell): string {
  const diff = (d?: number) => d === undefined ? "" : d === 0 ? "0" : d.toExponential(0);
  const partial =
    (cell.blocks && cell.blocks.pruned < cell.blocks.found
      ? ` (${cell.blocks.pruned}/${cell.blocks.found} blocks)`
      : "") + (cell.vOnly ? " (V only; Q/K kept)" : "");
  switch (cell.outcome) {
    case "exact":
      return `✓ ${diff(cell.difference)}${partial}`;
    case "runs":
      return `${cell.message ?? "pruned, not mask-exact"}${partial}`;
    case "refused":
      return `refused${cell.namesNode ? "" : " (no node named)"}: ${shorten(cell.message ?? "")}`;
    case "unpruned":
      return `✗ nothing pruned${cell.skipped?.length ? `: ${shorten(cell.skipped[0])}` : ""}`;
    case "wrong":
      return `✗ wrong (${diff(cell.difference)})`;
    case "vacuous":
      return `✗ vacuous (effect ${diff(cell.effect)})`;
    default:
      return `✗ ${shorten(cell.message ?? "error")}`;
  }
}
