/**
 * A float16 model's inputs and outputs as float32: onnxruntime-node under Deno cannot pass
 * float16 buffers, so a run that feeds or reads one goes through Casts added at the graph's
 * edges (float16 values are exact in float32 and back).
 *
 * @module
 */
import { onnx } from "../onnx/proto.ts";
import type { ModelProto, NodeProto, ValueInfoProto } from "../onnx/proto.ts";

const FLOAT = 1, FLOAT16 = 10;

/** The wrapped model and the names its float16 inputs and outputs go by there. */
export interface Float32Io {
  model: ModelProto;
  /** Original float16 input name → the float32 input that replaces it. */
  inputs: Map<string, string>;
  /** Float32 output name → the original float16 output it carries. */
  outputs: Map<string, string>;
}

function cast(input: string, output: string, to: number) {
  return onnx.NodeProto.create({
    opType: "Cast",
    name: `${output}__cast`,
    input: [input],
    output: [output],
    attribute: [onnx.AttributeProto.create({ name: "to", type: 2, i: to })],
  });
}

function asFloat32(v: ValueInfoProto, name: string): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: { tensorType: { elemType: FLOAT, shape: v.type?.tensorType?.shape } },
  });
}

/**
 * A shallow copy of `model` whose float16 graph inputs and outputs are float32 (Casts at the
 * edges); the original when it has none.
 *
 * @example const { model: m, inputs } = withFloat32Io(model); // feed inputs.get("x") ?? "x"
 */
export function withFloat32Io(model: ModelProto): Float32Io {
  const graph = model.graph!;
  const weights = new Set((graph.initializer ?? []).map((t) => t.name));
  const inputs = new Map<string, string>(), outputs = new Map<string, string>();
  const first: NodeProto[] = [], last: NodeProto[] = [];
  const graphInputs = (graph.input ?? []).map((v) => {
    if (weights.has(v.name) || v.type?.tensorType?.elemType !== FLOAT16) return v;
    const name = `${v.name}__float32`;
    inputs.set(v.name!, name);
    first.push(cast(name, v.name!, FLOAT16));
    return asFloat32(v, name);
  });
  const graphOutputs = (graph.output ?? []).map((v) => {
    if (v.type?.tensorType?.elemType !== FLOAT16) return v;
    const name = `${v.name}__float32`;
    outputs.set(name, v.name!);
    last.push(cast(v.name!, name, FLOAT));
    return asFloat32(v, name);
  });
  if (!inputs.size && !outputs.size) return { model, inputs, outputs };
  const wrapped = onnx.GraphProto.create({
    ...graph,
    input: graphInputs,
    output: graphOutputs,
    node: [...first, ...(graph.node ?? []), ...last],
  });
  return { model: onnx.ModelProto.create({ ...model, graph: wrapped }), inputs, outputs };
}
