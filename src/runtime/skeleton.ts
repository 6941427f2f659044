/**
 * A model's skeleton: the same graph with every large initializer replaced by a ConstantOfShape
 * node of the same name, type and dims. onnxruntime checks a skeleton as it checks the model
 * (schema, types, shapes) without the weights being encoded, copied or loaded — what makes the
 * load check of a pruned model cost milliseconds at any size. Load it with graph optimisations
 * off, or the zeros are materialised.
 *
 * @module
 */
import { onnx } from "../onnx/proto.ts";
import type { ModelProto, TensorProto } from "../onnx/proto.ts";
import { numbersToTensorBytes, tensorDims, tensorNumel } from "../onnx/tensor.ts";

/** Element types ConstantOfShape can produce (opset 9+): numeric and bool. */
const FILLABLE = new Set([1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13]);

/** Initializers above this many elements are replaced. */
const SMALL = 1024;

export function skeleton(model: ModelProto): ModelProto {
  const graph = model.graph!;
  const kept: TensorProto[] = [];
  const nodes: ReturnType<typeof onnx.NodeProto.create>[] = [];
  const replaced = new Set<string>();
  for (const t of graph.initializer ?? []) {
    if (tensorNumel(t) <= SMALL || !FILLABLE.has(t.dataType ?? 0)) {
      kept.push(t);
      continue;
    }
    const name = t.name ?? "";
    const dims = tensorDims(t);
    const shape = `${name}__skeleton_shape`;
    kept.push(onnx.TensorProto.create({
      name: shape,
      dataType: 7,
      dims: [dims.length],
      rawData: numbersToTensorBytes(dims, 7),
    }));
    const zero = onnx.TensorProto.create({
      dataType: t.dataType,
      dims: [1],
      rawData: numbersToTensorBytes([0], t.dataType ?? 1),
    });
    nodes.push(onnx.NodeProto.create({
      opType: "ConstantOfShape",
      input: [shape],
      output: [name],
      attribute: [onnx.AttributeProto.create({ name: "value", type: 4, t: zero })],
    }));
    replaced.add(name);
  }
  return onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({
      ...graph,
      initializer: kept,
      // An initializer also listed as a graph input (old IR versions) is no input once a node
      // makes it.
      input: (graph.input ?? []).filter((i) => !replaced.has(i.name ?? "")),
      node: [...nodes, ...(graph.node ?? [])],
    }),
  });
}
