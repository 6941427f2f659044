/**
 * The sizes a run gave to a model's symbolic input dims: counts that depend on them (MACs) are
 * true only at those sizes, and the report says which.
 *
 * @module
 */
import type { ModelProto } from "../onnx/proto.ts";
import { toNumber } from "../onnx/proto.ts";
import type { ProbedTensor } from "./probe.ts";

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
