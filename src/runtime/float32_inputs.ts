/**
 * A model's float16 graph inputs as float32 inputs cast to float16 inside the graph:
 * onnxruntime-node under Deno cannot read float16 input buffers, and a float16 model converted
 * from a float32 one is compared with float32 feeds.
 *
 * @module
 */
import { onnx } from "../onnx/proto.ts";
import type { ModelProto } from "../onnx/proto.ts";
import { DataType } from "../onnx/proto.ts";

/** Suffix of the float32 input that replaces a float16 one. */
export const FLOAT32_SUFFIX = "__float32";

/**
 * A shallow copy of `model` whose float16 graph inputs are float32 inputs named
 * `NAME__float32`, each followed by a Cast to float16 that produces the original name. Returns
 * the model itself when no input is float16.
 *
 * @example const session = await createSession(encodeModel(withFloat32Inputs(model)));
 */
export function withFloat32Inputs(model: ModelProto): ModelProto {
  const graph = model.graph!;
  const weights = new Set((graph.initializer ?? []).map((t) => t.name));
  const half = (graph.input ?? []).filter((i) =>
    !weights.has(i.name) && i.type?.tensorType?.elemType === DataType.FLOAT16
  );
  if (half.length === 0) return model;
  const casts = half.map((i) =>
    onnx.NodeProto.create({
      name: `${i.name}${FLOAT32_SUFFIX}_cast`,
      opType: "Cast",
      input: [`${i.name}${FLOAT32_SUFFIX}`],
      output: [i.name!],
      attribute: [onnx.AttributeProto.create({ name: "to", type: 2, i: DataType.FLOAT16 })],
    })
  );
  const input = (graph.input ?? []).map((i) => {
    if (!half.includes(i)) return i;
    const type = onnx.TypeProto.create({
      tensorType: { elemType: DataType.FLOAT, shape: i.type?.tensorType?.shape },
    });
    return onnx.ValueInfoProto.create({ name: `${i.name}${FLOAT32_SUFFIX}`, type });
  });
  const copy = onnx.GraphProto.create({ ...graph, input, node: [...casts, ...(graph.node ?? [])] });
  return onnx.ModelProto.create({ ...model, graph: copy });
}
