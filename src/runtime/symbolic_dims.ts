/**
 * Sizes for the symbolic dims of a model's inputs when the user gives none, chosen so that they
 * agree with each other: a decoder with a KV cache names its attention mask's length
 * `past_sequence_length + sequence_length` (Optimum) or `total_sequence_length`
 * (onnxruntime-genai), and a run with that length unequal to past + new fails deep inside the
 * graph. A dim spelled as a sum is the sum of its terms; a "total" length is past + new. Counts
 * that depend on these sizes (MACs) are true only at them, and the report says which.
 *
 * @module
 */
import type { ModelProto } from "../onnx/proto.ts";
import { toNumber } from "../onnx/proto.ts";
import type { ProbedTensor } from "./probe.ts";

/** How a symbolic dim got its size (for messages that name the dims). */
export interface DimChoice {
  name: string;
  size: number;
  /** "given" by the user, "batch", "sum" of other dims, or "default". */
  how: "given" | "batch" | "sum" | "default";
}

type Dim = { dimValue?: unknown; dimParam?: string | null };

/**
 * Sizes of every symbolic dim of the given input shapes. `given` wins; a name used for the first
 * axis of any input is the batch; `a + b` (names or numbers) is the sum of its terms; a name with
 * "total" in it, when a "past" dim and a new-token dim exist, is their sum; the rest take
 * `other`.
 */
export function chooseDims(
  shapes: Dim[][],
  given: Record<string, number>,
  batch: number,
  other: number,
): Map<string, DimChoice> {
  const names = new Set<string>(), batchNames = new Set<string>();
  for (const dims of shapes) {
    dims.forEach((d, axis) => {
      if (!d.dimParam || hasValue(d)) return;
      names.add(d.dimParam);
      if (axis === 0) batchNames.add(d.dimParam);
    });
  }
  const plain = [...names].filter((n) => !isSum(n));
  const past = plain.find((n) => /past/i.test(n) && !/total/i.test(n));
  const fresh = plain.find((n) => /seq|len/i.test(n) && !/past|total|max/i.test(n));
  const out = new Map<string, DimChoice>();
  const resolve = (name: string, depth = 0): number => {
    const known = out.get(name);
    if (known) return known.size;
    let choice: DimChoice;
    if (given[name] !== undefined) choice = { name, size: given[name], how: "given" };
    else if (isSum(name) && depth < 4) {
      const terms = name.split("+").map((t) => t.trim());
      const size = terms.reduce(
        (s, t) => s + (/^\d+$/.test(t) ? Number(t) : resolve(t, depth + 1)),
        0,
      );
      choice = { name, size, how: "sum" };
    } else if (batchNames.has(name)) choice = { name, size: batch, how: "batch" };
    else if (/total/i.test(name) && past && fresh && depth < 4) {
      choice = { name, size: resolve(past, depth + 1) + resolve(fresh, depth + 1), how: "sum" };
    } else choice = { name, size: other, how: "default" };
    out.set(name, choice);
    return choice.size;
  };
  for (const n of names) resolve(n);
  return out;
}

function hasValue(d: Dim): boolean {
  return d.dimValue != null && Number(d.dimValue) > 0;
}

function isSum(name: string): boolean {
  return name.includes("+") && name.split("+").every((t) => /^\s*[\w.]+\s*$/.test(t));
}

/** "batch_size=1, sequence_length=8 (default), …" for messages. */
export function describeDims(choices: Iterable<DimChoice>): string {
  return [...choices].map((c) =>
    `${c.name}=${c.size}${c.how === "default" || c.how === "sum" ? ` (${c.how})` : ""}`
  ).join(", ");
}

/**
 * Size of every symbolic (or unknown) graph input dim in the probed shapes, keyed by its
 * `dim_param` name, or `input[axis]` when it has none; empty for a model with static inputs.
 *
 * @example symbolicDimSizes(model, await probeTensors(model)) // { batch: 1, sequence: 8 }
 */
export function symbolicDimSizes(
  model: ModelProto,
  probed: Map<string, ProbedTensor>,
): Record<string, number> {
  const graph = model.graph!;
  const weights = new Set((graph.initializer ?? []).map((t) => t.name));
  const sizes: Record<string, number> = {};
  for (const input of graph.input ?? []) {
    if (weights.has(input.name)) continue;
    const dims = probed.get(input.name ?? "")?.dims;
    (input.type?.tensorType?.shape?.dim ?? []).forEach((d, axis) => {
      if (d.dimValue != null && toNumber(d.dimValue as number) > 0) return;
      const size = dims?.[axis];
      if (size !== undefined) sizes[d.dimParam || `${input.name}[${axis}]`] ??= size;
    });
  }
  return sizes;
}
