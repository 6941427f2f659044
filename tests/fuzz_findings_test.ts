/**
 * Regression cases of what the targeted fuzzer found (scripts/fuzz.ts --strategy targeted), each
 * rebuilt as the smallest model that shows it.
 */
import assert from "node:assert/strict";
import { onnx } from "../src/onnx/proto.ts";
import type { ModelProto, NodeProto, TensorProto } from "../src/onnx/proto.ts";
import { probeTensors } from "../src/runtime/probe.ts";
import { StaticShapeUnknown } from "../src/runtime/static_shapes.ts";

function io(name: string, dims: number[], elemType = 1) {
  return onnx.ValueInfoProto.create({
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
}

function int64s(name: string, values: bigint[]): TensorProto {
  const raw = new Uint8Array(8 * values.length);
  values.forEach((v, i) => new DataView(raw.buffer).setBigInt64(8 * i, v, true));
  return onnx.TensorProto.create({ name, dims: [values.length], dataType: 7, rawData: raw });
}

function model(
  nodes: NodeProto[],
  inits: TensorProto[],
  input: [string, number[]],
  output: string,
): ModelProto {
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "g",
      node: nodes,
      initializer: inits,
      input: [io(...input)],
      output: [onnx.ValueInfoProto.create({ name: output })],
    },
  });
}

const INT64_MAX = (1n << 63n) - 1n, INT64_MIN = -(1n << 63n);

function slice(starts: bigint, ends: bigint, axes: bigint, steps: bigint): ModelProto {
  return model(
    [onnx.NodeProto.create({
      name: "cut",
      opType: "Slice",
      input: ["x", "s", "e", "a", "st"],
      output: ["y"],
    })],
    [int64s("s", [starts]), int64s("e", [ends]), int64s("a", [axes]), int64s("st", [steps])],
    ["x", [1, 4, 8, 16]],
    "y",
  );
}

Deno.test("Slice backwards: an end of INT64_MAX or INT32_MAX means 'to the start' in onnxruntime, and the shapes say so", async () => {
  // Found as phi3's RoPE pass-through Slice with its step turned to -1: shapes from the graph
  // said 0 elements, onnxruntime took 16, and a model that does not run was pruned and written.
  for (
    const [start, end] of [
      [16n, INT64_MAX],
      [15n, 2147483647n],
      [16n, INT64_MIN],
      [-100n, INT64_MIN],
      [-100n, -100n],
      [16n, 100n],
      [3n, -9n],
    ]
  ) {
    const m = slice(start, end, 3n, -1n);
    const ran = await probeTensors(m, { method: "run" });
    const found = await probeTensors(m, { method: "static" });
    assert.deepEqual(found.get("y")?.dims, ran.get("y")?.dims, `start ${start}, end ${end}`);
  }
  // An end this large but not a sentinel is not exact as a number: the run decides.
  await assert.rejects(
    () => probeTensors(slice(16n, 1n << 60n, 3n, -1n), { method: "static" }),
    (e) => e instanceof StaticShapeUnknown && /Slice "cut"/.test(e.message),
  );
});

Deno.test("Slice, Squeeze, Unsqueeze, ReduceSum axes from data outside the rank: handed to the run at once", async () => {
  // Found as a Slice axis of 2^31 in BERT's embeddings: shapes from the graph wrote an array
  // element at index 2^31 and spent minutes before failing with "Invalid array length".
  const a = 2n ** 31n;
  const cases: [string, ModelProto][] = [
    ["Slice", slice(0n, 1n, a, 1n)],
    [
      "Squeeze",
      model(
        [onnx.NodeProto.create({
          name: "cut",
          opType: "Squeeze",
          input: ["x", "a"],
          output: ["y"],
        })],
        [int64s("a", [a])],
        ["x", [1, 4]],
        "y",
      ),
    ],
    [
      "Unsqueeze",
      model(
        [onnx.NodeProto.create({
          name: "cut",
          opType: "Unsqueeze",
          input: ["x", "a"],
          output: ["y"],
        })],
        [int64s("a", [-a])],
        ["x", [1, 4]],
        "y",
      ),
    ],
    [
      "ReduceSum",
      model(
        [onnx.NodeProto.create({
          name: "cut",
          opType: "ReduceSum",
          input: ["x", "a"],
          output: ["y"],
        })],
        [int64s("a", [1n, 1n])],
        ["x", [1, 4]],
        "y",
      ),
    ],
  ];
  for (const [op, m] of cases) {
    await assert.rejects(
      () => probeTensors(m, { method: "static" }),
      (e) => e instanceof StaticShapeUnknown && new RegExp(`${op} "cut": axes`).test(e.message),
      op,
    );
  }
});
