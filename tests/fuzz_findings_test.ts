/**
 * Regression cases of what the targeted fuzzer found (scripts/fuzz.ts --strategy targeted), each
 * rebuilt as the smallest model that shows it.
 */
import assert from "node:assert/strict";
import { onnx } from "../src/onnx/proto.ts";
import type { ModelProto, NodeProto, TensorProto } from "../src/onnx/proto.ts";
import { probeTensors } from "../src/runtime/probe.ts";
import { StaticShapeUnknown } from "../src/runtime/static_shapes.ts";
import { checkAttributes } from "../src/graph/check_attributes.ts";
import { PruneError } from "../src/errors.ts";
import { Factor, unifyLists } from "../src/analysis/factors.ts";

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

function one(op: string, inputs: string[], attrs: Record<string, number> = {}): NodeProto {
  return onnx.NodeProto.create({
    name: "cut",
    opType: op,
    input: inputs,
    output: ["y"],
    attribute: Object.entries(attrs).map(([name, i]) => ({ name, type: 2, i })),
  });
}

Deno.test("flags other than 0 and 1, and Casts to no data type: refused naming the node", () => {
  // Found as keepdims = 7 (onnxruntime reads "is 1": off; a shape rule read "not 0": on) and
  // Cast to = 0 (loads, fails only when run): each gave a written model that does not run.
  for (
    const [op, attrs, why] of [
      ["ReduceMean", { keepdims: 7 }, /'keepdims' = 7 must be 0 or 1/],
      ["Reshape", { allowzero: 2 }, /'allowzero' = 2 must be 0 or 1/],
      ["Cast", { to: 0 }, /'to' = 0 is not a data type/],
      ["Cast", { to: 14 }, /'to' = 14 is not a data type/],
    ] as const
  ) {
    const m = model([one(op, ["x"], attrs)], [], ["x", [1, 4]], "y");
    assert.throws(
      () => checkAttributes(m.graph!),
      (e) =>
        e instanceof PruneError && new RegExp(`${op} node "cut"`).test(e.message) &&
        why.test(e.message),
      op,
    );
  }
  checkAttributes(model([one("Cast", ["x"], { to: 10 })], [], ["x", [1, 4]], "y").graph!);
});

Deno.test("shape rules that disagreed with onnxruntime hand the node to the run", async () => {
  // Squeeze of an axis that is not 1 (timm's qkv Squeeze with its axis edited), int64
  // arithmetic that wraps in onnxruntime (phi3's gate/up split size times INT64_MAX), a Conv
  // kernel_shape other than its weight's: shapes from the graph went on, the run fails.
  const cases: [string, ModelProto][] = [
    ["Squeeze", model([one("Squeeze", ["x", "a"])], [int64s("a", [1n])], ["x", [1, 4]], "y")],
    [
      "Mul",
      model(
        [one("Shape", ["x"]), one("Mul", ["y0", "big"])].map((n, i) =>
          Object.assign(n, i === 0 ? { output: ["y0"], name: "shape" } : {})
        ),
        [int64s("big", [INT64_MAX])],
        ["x", [1, 4]],
        "y",
      ),
    ],
    [
      "Conv",
      (() => {
        const conv = onnx.NodeProto.create({
          name: "cut",
          opType: "Conv",
          input: ["x", "w"],
          output: ["y"],
          attribute: [{ name: "kernel_shape", type: 7, ints: [8, 3] }],
        });
        const w = onnx.TensorProto.create({
          name: "w",
          dims: [2, 3, 3, 3],
          dataType: 1,
          rawData: new Uint8Array(4 * 54),
        });
        return model([conv], [w], ["x", [1, 3, 8, 8]], "y");
      })(),
    ],
  ];
  for (const [op, m] of cases) {
    await assert.rejects(
      () => probeTensors(m, { method: "static" }),
      (e) => e instanceof StaticShapeUnknown && new RegExp(`${op} "cut"`).test(e.message),
      op,
    );
    // What the probe says is what the run says: a refusal, or onnxruntime's wrapped values.
    const run = await probeTensors(m, { method: "run" }).catch((e) => String(e));
    const auto = await probeTensors(m).catch((e) => String(e));
    assert.deepEqual(auto, run, op);
  }
});

Deno.test("a shape vector reshaped to 2^31 elements, a Range of 2^31: refused before onnxruntime sees them", async () => {
  // Found as hangs and memory overruns: Reshape(Concat of dims, [2^31]) feeding Shape →
  // ConstantOfShape made onnxruntime's shape inference run for minutes over gigabytes; a Range
  // from -2^31 - 1 made its run allocate 16 GB.
  const reshape = model(
    [one("Shape", ["x"]), one("Reshape", ["s", "t"])].map((n, i) =>
      Object.assign(n, i === 0 ? { output: ["s"], name: "shape" } : {})
    ),
    [int64s("t", [2n ** 31n])],
    ["x", [1, 4, 8]],
    "y",
  );
  await assert.rejects(
    () => probeTensors(reshape),
    (e) =>
      e instanceof PruneError && /Reshape node "cut": cannot reshape \[3\] to \[2147483648\]/.test(
        e.message,
      ),
  );
  const range = model(
    [one("Range", ["a", "b", "c"])],
    [int64s("a", [-(2n ** 31n) - 1n]), int64s("b", [8n]), int64s("c", [1n])].map((t) => (
      Object.assign(t, { dims: [] })
    )),
    ["x", [1]],
    "y",
  );
  await assert.rejects(
    () => probeTensors(range),
    (e) =>
      e instanceof PruneError && e.code === "too-large" &&
      /Range node "cut": its output "y" would have 2147483657 elements/.test(e.message),
  );
});

Deno.test("factor lists where one channel class appears twice: no match, not an internal error", () => {
  // Found as llama's rotate-half Concat with an axis constant edited: the trace refined a
  // factor it then met again, and failed with "refine() of a refined factor".
  const a = new Factor(4, true, "a");
  const [b, c, d, e] = [2, 2, 2, 8].map((s, i) => new Factor(s, true, `b${i}`));
  assert.equal(unifyLists([a, a], [b, c, d, e]), false);
});

Deno.test("a graph input of type string is fed strings when the model is run", async () => {
  // Found as kv_llama's position_ids typed STRING (a Cast reads it, onnxruntime runs it): the
  // run of the pruned model could not be fed.
  const m = model([one("Cast", ["x"], { to: 1 })], [], ["x", [2, 3]], "y");
  m.graph!.input![0].type!.tensorType!.elemType = 8;
  const ran = await probeTensors(m, { method: "run" });
  assert.deepEqual(ran.get("y")?.dims, [2, 3]);
});

Deno.test("the checks on the way see past a node without a shape rule", async () => {
  // Found in the QDQ ViT: a weight's DequantizeLinear (no static rule) came first, so the walk
  // stopped there and onnxruntime met the shape vector reshaped to 2^31 - 1 (3 GB and rising).
  const dq = onnx.NodeProto.create({
    name: "dq",
    opType: "Einsum",
    input: ["x"],
    output: ["x2"],
    attribute: [{ name: "equation", type: 3, s: new TextEncoder().encode("ij->ij") }],
  });
  const m = model(
    [dq, one("Shape", ["x"]), one("Reshape", ["s", "t"])].map((n, i) =>
      Object.assign(n, i === 1 ? { output: ["s"], name: "shape" } : {})
    ),
    [int64s("t", [2n ** 31n - 1n])],
    ["x", [1, 4]],
    "y",
  );
  await assert.rejects(
    () => probeTensors(m),
    (e) => e instanceof PruneError && /Reshape node "cut": cannot reshape \[2\]/.test(e.message),
  );
});

Deno.test("attention head counts that are not positive, or do not divide: refused naming the node", () => {
  // Found as GroupQueryAttention's kv_num_heads = 2^32: onnxruntime read 0 and stopped the
  // process with SIGFPE.
  for (
    const [heads, kv, why] of [
      [8, 2 ** 32, /'kv_num_heads' = 4294967296 must be a positive count/],
      [0, 2, /'num_heads' = 0 must be a positive count/],
      [8, 3, /num_heads = 8 is not a multiple of kv_num_heads = 3/],
    ] as const
  ) {
    const gqa = onnx.NodeProto.create({
      name: "cut",
      opType: "GroupQueryAttention",
      domain: "com.microsoft",
      input: ["x"],
      output: ["y"],
      attribute: [{ name: "num_heads", type: 2, i: heads }, {
        name: "kv_num_heads",
        type: 2,
        i: kv,
      }],
    });
    assert.throws(
      () => checkAttributes(model([gqa], [], ["x", [1, 4]], "y").graph!),
      (e) =>
        e instanceof PruneError && /GroupQueryAttention node "cut"/.test(e.message) &&
        why.test(e.message),
      `${heads}/${kv}`,
    );
  }
});
