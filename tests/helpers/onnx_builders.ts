/** Small ONNX models built programmatically for tests. */
import { DataType, type ModelProto, onnx, type TensorProto } from "../../src/onnx/proto.ts";
import { float32ToTensorBytes, makeTensor, numbersToTensorBytes } from "../../src/onnx/tensor.ts";

/** Deterministic pseudo-random floats in [-1, 1). */
export function seededFloats(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** Deterministic pseudo-random bytes. */
export function seededBytes(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]) {
  return onnx.ValueInfoProto.create({
    name,
    docString: `value ${name}`,
    type: {
      tensorType: {
        elemType,
        shape: {
          dim: dims.map((d) => typeof d === "number" ? { dimValue: d } : { dimParam: d }),
        },
      },
    },
  });
}

/**
 * y = (x @ W + b) * c, with W [in, hidden] (float), b [hidden], a Constant node with float_data
 * storage, a Reshape shape constant (int64), metadata, doc strings, a local function and
 * value_info. `hidden`×`in`×4 bytes of weights (≥ 1024 with the defaults).
 */
export function buildMlpModel(inDim = 16, hidden = 32): ModelProto {
  const w = makeTensor(
    "W",
    DataType.FLOAT,
    [inDim, hidden],
    float32ToTensorBytes(seededFloats(inDim * hidden, 3), DataType.FLOAT),
  );
  w.docString = "weight matrix";
  const b = makeTensor(
    "b",
    DataType.FLOAT,
    [hidden],
    float32ToTensorBytes(seededFloats(hidden, 5), DataType.FLOAT),
  );
  const shape = makeTensor(
    "shape",
    DataType.INT64,
    [2],
    numbersToTensorBytes([-1, hidden], DataType.INT64),
  );
  const cTensor: TensorProto = onnx.TensorProto.create({
    name: "c_value",
    dataType: DataType.FLOAT,
    dims: [1],
    floatData: [0.5],
  });
  const nodes = [
    onnx.NodeProto.create({
      name: "matmul",
      opType: "MatMul",
      input: ["x", "W"],
      output: ["xw"],
      docString: "first",
    }),
    onnx.NodeProto.create({ name: "add", opType: "Add", input: ["xw", "b"], output: ["h"] }),
    onnx.NodeProto.create({
      name: "const_c",
      opType: "Constant",
      output: ["c"],
      attribute: [{ name: "value", type: onnx.AttributeProto.AttributeType.TENSOR, t: cTensor }],
    }),
    onnx.NodeProto.create({ name: "mul", opType: "Mul", input: ["h", "c"], output: ["hc"] }),
    onnx.NodeProto.create({
      name: "reshape",
      opType: "Reshape",
      input: ["hc", "shape"],
      output: ["y"],
    }),
  ];
  const fn = onnx.FunctionProto.create({
    name: "Twice",
    domain: "test.local",
    input: ["a"],
    output: ["b"],
    attribute: [],
    node: [onnx.NodeProto.create({ opType: "Add", input: ["a", "a"], output: ["b"] })],
    opsetImport: [{ domain: "", version: 17 }],
    docString: "a local function",
  });
  return onnx.ModelProto.create({
    irVersion: 8,
    producerName: "prune-vit-tests",
    producerVersion: "0.1",
    domain: "test",
    modelVersion: 3,
    docString: "a tiny MLP",
    opsetImport: [{ domain: "", version: 17 }, { domain: "test.local", version: 1 }],
    metadataProps: [{ key: "author", value: "tests" }, { key: "ünïcode", value: "✓" }],
    functions: [fn],
    graph: {
      name: "mlp",
      docString: "graph doc",
      node: nodes,
      initializer: [w, b, shape],
      input: [valueInfo("x", DataType.FLOAT, ["batch", inDim])],
      output: [valueInfo("y", DataType.FLOAT, ["batch", hidden])],
      valueInfo: [valueInfo("h", DataType.FLOAT, ["batch", hidden])],
    },
  });
}

/** A node with every attribute kind (float(s), int(s), string(s), tensor, graph). */
export function buildAttributeModel(): ModelProto {
  const sub = onnx.GraphProto.create({
    name: "sub",
    node: [{ opType: "Identity", input: ["p"], output: ["q"] }],
    input: [valueInfo("p", DataType.FLOAT, [1])],
    output: [valueInfo("q", DataType.FLOAT, [1])],
  });
  const A = onnx.AttributeProto.AttributeType;
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "attrs",
      node: [{
        name: "custom",
        opType: "Custom",
        domain: "test.custom",
        input: ["x"],
        output: ["y"],
        attribute: [
          { name: "f", type: A.FLOAT, f: 1.5 },
          { name: "i", type: A.INT, i: -3 },
          { name: "big", type: A.INT, i: 2 ** 40 + 1 },
          { name: "s", type: A.STRING, s: new TextEncoder().encode("hello") },
          { name: "floats", type: A.FLOATS, floats: [0.25, -1, 3] },
          { name: "ints", type: A.INTS, ints: [1, -2, 2 ** 33] },
          { name: "strings", type: A.STRINGS, strings: [new Uint8Array([1, 2]), new Uint8Array()] },
          { name: "g", type: A.GRAPH, g: sub },
          {
            name: "t",
            type: A.TENSOR,
            t: { name: "tv", dataType: DataType.INT32, dims: [2], int32Data: [7, -8] },
          },
        ],
      }],
      input: [valueInfo("x", DataType.FLOAT, [1])],
      output: [valueInfo("y", DataType.FLOAT, [1])],
    },
  });
}
