/**
 * The float32 graph distillation trains when a model holds float16 or bfloat16: its weights,
 * constants, casts and declared types in float32 (the master weights), the original untouched.
 * The trained weights are rounded back to the original's types when written.
 *
 * @module
 */
import { onnx } from "../onnx/proto.ts";
import type {
  AttributeProto,
  GraphProto,
  ModelProto,
  NodeProto,
  TensorProto,
  ValueInfoProto,
} from "../onnx/proto.ts";
import { float32ToTensorBytes, tensorDims, tensorToFloat32 } from "../onnx/tensor.ts";

/** float16, bfloat16. */
const HALF = new Set([10, 16]);
/** Ops with a `dtype` attribute naming the type they make. */
const DTYPE_OPS = new Set([
  "EyeLike",
  "RandomNormal",
  "RandomUniform",
  "RandomNormalLike",
  "RandomUniformLike",
]);

/** Whether any tensor or declared type of the model is float16 or bfloat16. */
export function hasHalfFloats(model: ModelProto): boolean {
  let found = false;
  visit(model.graph!, (g) => {
    found ||= (g.initializer ?? []).some((t) => HALF.has(t.dataType ?? 0)) ||
      [...(g.input ?? []), ...(g.output ?? [])].some((v) =>
        HALF.has(v.type?.tensorType?.elemType ?? 0)
      ) ||
      (g.node ?? []).some((
        n,
      ) => (n.opType === "Cast" &&
        n.attribute?.some((a) => a.name === "to" && HALF.has(Number(a.i))))
      );
  });
  return found;
}

function visit(graph: GraphProto, f: (g: GraphProto) => void) {
  f(graph);
  for (const n of graph.node ?? []) {
    for (const a of n.attribute ?? []) {
      for (const sub of [a.g, ...(a.graphs ?? [])]) if (sub) visit(sub, f);
    }
  }
}

/** A float32 copy of a tensor held in half precision (others returned as they are). */
function tensor32(t: TensorProto): TensorProto {
  if (!HALF.has(t.dataType ?? 0)) return t;
  const values = tensorToFloat32(t);
  return onnx.TensorProto.create({
    name: t.name,
    dataType: 1,
    dims: tensorDims(t),
    rawData: float32ToTensorBytes(values, 1),
  });
}

function info32(v: ValueInfoProto): ValueInfoProto {
  const tt = v.type?.tensorType;
  if (!tt || !HALF.has(tt.elemType ?? 0)) return v;
  return onnx.ValueInfoProto.create({
    ...v,
    type: onnx.TypeProto.create({
      ...v.type,
      tensorType: onnx.TypeProto.Tensor.create({ ...tt, elemType: 1 }),
    }),
  });
}

function attribute32(node: NodeProto, a: AttributeProto): AttributeProto {
  if (a.t && HALF.has(a.t.dataType ?? 0)) {
    return onnx.AttributeProto.create({ ...a, t: tensor32(a.t) });
  }
  if (a.g || a.graphs?.length) {
    return onnx.AttributeProto.create({
      ...a,
      ...(a.g ? { g: graph32(a.g) } : {}),
      ...(a.graphs?.length ? { graphs: a.graphs.map(graph32) } : {}),
    });
  }
  const typed = (node.opType === "Cast" && a.name === "to") ||
    (DTYPE_OPS.has(node.opType ?? "") && a.name === "dtype");
  if (typed && HALF.has(Number(a.i))) return onnx.AttributeProto.create({ ...a, i: 1 });
  return a;
}

function graph32(graph: GraphProto): GraphProto {
  return onnx.GraphProto.create({
    ...graph,
    initializer: (graph.initializer ?? []).map(tensor32),
    input: (graph.input ?? []).map(info32),
    output: (graph.output ?? []).map(info32),
    valueInfo: (graph.valueInfo ?? []).map(info32),
    node: (graph.node ?? []).map((n) =>
      onnx.NodeProto.create({ ...n, attribute: (n.attribute ?? []).map((a) => attribute32(n, a)) })
    ),
  });
}

/** `model` with every float16 / bfloat16 tensor, cast and declared type in float32. */
export function float32Model(model: ModelProto): ModelProto {
  return onnx.ModelProto.create({ ...model, graph: graph32(model.graph!) });
}
