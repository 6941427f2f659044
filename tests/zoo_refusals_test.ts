/**
 * Every refusal says where and why: an attention block the analysis cannot follow is refused
 * with the candidate MatMuls and the rule that stopped each (and listed in the report's
 * `problems` when something else is pruned); RoPE refusals say RoPE; a squeeze-excitation inside
 * a convolutional stem is not taken for the embedding width; MACs of a model with symbolic dims
 * say at what size they were counted. Small graphs built here, and the zoo's exports.
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import { DataType, type ModelProto, onnx } from "../src/onnx/proto.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { float32ToTensorBytes, makeTensor, numbersToTensorBytes } from "../src/onnx/tensor.ts";
import { pruneModel, type RunOptions } from "../src/prune.ts";
import { formatReport } from "../src/format_report.ts";
import { maskingCheck } from "../src/verify.ts";
import { seededFloats } from "./helpers/onnx_builders.ts";

const ZOO = new URL("./fixtures/zoo/", import.meta.url);
const core = await createCore({ backend: "cpu" });
const HEADS: RunOptions = { pruneNumHeads: true, headPruningRatio: 0.5 };
const DIMS: RunOptions = { pruneHeadDims: true, headPruningRatio: 0.5 };

/** A graph under construction: nodes, float weights (seeded) and int64 shape constants. */
class Builder {
  nodes: ReturnType<typeof onnx.NodeProto.create>[] = [];
  inits: ReturnType<typeof makeTensor>[] = [];
  #seed = 1;
  weight(name: string, dims: number[], scale = 0.3): string {
    const n = dims.reduce((a, b) => a * b, 1);
    const values = seededFloats(n, this.#seed++).map((v) => v * scale);
    this.inits.push(makeTensor(name, DataType.FLOAT, dims, float32ToTensorBytes(values, 1)));
    return name;
  }
  ints(name: string, values: number[]): string {
    const bytes = numbersToTensorBytes(values, DataType.INT64);
    this.inits.push(makeTensor(name, DataType.INT64, [values.length], bytes));
    return name;
  }
  node(
    opType: string,
    name: string,
    input: string[],
    attrs: Record<string, number | number[]> = {},
  ): string {
    const attribute = Object.entries(attrs).map(([k, v]) =>
      Array.isArray(v)
        ? onnx.AttributeProto.create({ name: k, type: 7, ints: v })
        : onnx.AttributeProto.create({ name: k, type: 2, i: v })
    );
    this.nodes.push(onnx.NodeProto.create({ name, opType, input, output: [name], attribute }));
    return name;
  }
  model(input: [string, (number | string)[]], output: string): ModelProto {
    const info = (name: string, dims: (number | string)[]) =>
      onnx.ValueInfoProto.create({
        name,
        type: {
          tensorType: {
            elemType: DataType.FLOAT,
            shape: {
              dim: dims.map((d) => typeof d === "number" ? { dimValue: d } : { dimParam: d }),
            },
          },
        },
      });
    return onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: "", version: 17 }],
      graph: {
        name: "g",
        node: this.nodes,
        initializer: this.inits,
        input: [info(...input)],
        output: [info(output, [])],
        valueInfo: [],
      },
    });
  }
}

/**
 * x [1, 4, 16] → attention with 2 heads of 8 dims, Q passed through `qOp` (an op the analysis
 * has no rule for) → residual → MLP 16 → 32 → 16 → residual.
 */
function attentionModel(qOp: string): ModelProto {
  const b = new Builder();
  const heads = b.ints("heads_shape", [1, 4, 2, 8]);
  const flat = b.ints("flat_shape", [1, 4, 16]);
  const head = (what: string, perm: number[]) => {
    const y = b.node("MatMul", what, ["x", b.weight(`W_${what}`, [16, 16])]);
    const r = b.node("Reshape", `${what}_heads`, [y, heads]);
    return b.node("Transpose", `${what}_t`, [r], { perm });
  };
  const attrs: Record<string, number> = qOp === "Hardmax" ? { axis: -1 } : {};
  const q = b.node(qOp, "q_op", [head("q", [0, 2, 1, 3])], attrs);
  const k = head("k", [0, 2, 3, 1]), v = head("v", [0, 2, 1, 3]);
  const p = b.node("Softmax", "probs", [b.node("MatMul", "scores", [q, k])], { axis: -1 });
  const ctx = b.node("Transpose", "ctx_t", [b.node("MatMul", "context", [p, v])], {
    perm: [0, 2, 1, 3],
  });
  const merged = b.node("Reshape", "ctx_flat", [ctx, flat]);
  const attn = b.node("MatMul", "proj", [merged, b.weight("W_proj", [16, 16])]);
  const h = b.node("Add", "residual1", ["x", attn]);
  const fc1 = b.node("Relu", "act", [b.node("MatMul", "fc1", [h, b.weight("W_fc1", [16, 32])])]);
  const fc2 = b.node("MatMul", "fc2", [fc1, b.weight("W_fc2", [32, 16])]);
  b.node("Add", "y", [h, fc2]);
  return b.model(["x", [1, 4, 16]], "y");
}

/**
 * x [batch, 3, 8, 8] → patch convolution (16 channels, stride 4) → squeeze-excitation (mean,
 * 1×1 conv 16 → 4, Relu, 1×1 conv 4 → 16, Sigmoid, Mul) → tokens [batch, 4, 16] → MLP with a
 * residual → mean over tokens → classifier.
 */
function seStemModel(): ModelProto {
  const b = new Builder();
  const patch = b.node("Conv", "patch", ["x", b.weight("W_patch", [16, 3, 4, 4])], {
    strides: [4, 4],
  });
  const pooled = b.node("ReduceMean", "se_pool", [patch], { axes: [2, 3], keepdims: 1 });
  const squeeze = b.node("Conv", "se_reduce", [
    pooled,
    b.weight("W_se1", [4, 16, 1, 1]),
    b.weight("b_se1", [4]),
  ]);
  const expand = b.node("Conv", "se_expand", [
    b.node("Relu", "se_act", [squeeze]),
    b.weight("W_se2", [16, 4, 1, 1]),
    b.weight("b_se2", [16]),
  ]);
  const gated = b.node("Mul", "se_gate", [patch, b.node("Sigmoid", "se_sigmoid", [expand])]);
  const tokens = b.node("Transpose", "tokens", [
    b.node("Reshape", "flatten", [gated, b.ints("tokens_shape", [0, 16, 4])]),
  ], { perm: [0, 2, 1] });
  const fc1 = b.node("Relu", "act", [
    b.node("MatMul", "fc1", [tokens, b.weight("W_fc1", [16, 32])]),
  ]);
  const fc2 = b.node("MatMul", "fc2", [fc1, b.weight("W_fc2", [32, 16])]);
  const pooled2 = b.node("ReduceMean", "pool", [b.node("Add", "residual", [tokens, fc2])], {
    axes: [1],
    keepdims: 0,
  });
  b.node("MatMul", "y", [pooled2, b.weight("W_head", [16, 10])]);
  return b.model(["x", ["batch", 3, 8, 8]], "y");
}

Deno.test("no attention recognised: the error names the candidate MatMuls and the rule that stopped each", async () => {
  const bytes = encodeModel(attentionModel("Hardmax"));
  // Sanity: with a rule-covered op in its place, the same graph prunes heads exactly.
  const plain = await maskingCheck(encodeModel(attentionModel("Identity")), { ...HEADS, core });
  assert.ok(plain.difference <= 1e-5 && plain.effect > 1e-5);
  await assert.rejects(
    () => pruneModel(decodeModel(bytes), { ...HEADS, core }),
    (e: Error) => {
      assert.match(e.message, /no attention block was recognised/);
      assert.match(e.message, /\d+ candidates? seen/);
      assert.match(e.message, /MatMul "scores"/);
      assert.match(
        e.message,
        /Hardmax node "q_op": no propagation rule for Hardmax/,
      );
      return true;
    },
  );
});

Deno.test("the MatMuls kept out of attention are listed in the report's problems", async () => {
  const bytes = encodeModel(attentionModel("Hardmax"));
  const { difference, effect, pruned } = await maskingCheck(bytes, { pruningRatio: 0.5, core });
  assert.ok(difference <= 1e-5 && effect > 1e-5, "the MLP still prunes exactly");
  const problems = pruned.report.problems ?? [];
  assert.ok(problems.some((p) => /^MatMul "scores": .*Hardmax node "q_op"/.test(p)));
  for (const p of problems) assert.match(p, /^MatMul "[^"]+": /, "every problem names its node");
  // A graph whose attention is found has none.
  const plain = await pruneModel(decodeModel(encodeModel(attentionModel("Identity"))), {
    ...HEADS,
    core,
  });
  assert.equal(plain.report.problems, undefined);
});

Deno.test("RoPE: head dims are refused naming rotary position embedding and the node", async () => {
  const bytes = await Deno.readFile(new URL("float16_llama.onnx", ZOO));
  await assert.rejects(
    () => pruneModel(decodeModel(bytes), { ...DIMS, core }),
    /rotary position embedding \(RoPE, Add node "[^"]+self_attn[^"]*"\) pairs dims i and i\+d\/2/,
  );
  // With no head mode given, whole heads go instead, and the note says why.
  const { report } = await pruneModel(decodeModel(bytes), { headPruningRatio: 0.5, core });
  assert.ok(report.notes.some((n) => /removing whole heads.*RoPE/.test(n)), report.notes.join());
});

Deno.test("a squeeze-excitation in a convolutional stem is not the embedding width", async () => {
  const model = seStemModel();
  const { report } = await pruneModel(model, { pruningRatio: 0.5, dryRun: true, core });
  const embedding = report.groups.filter((g) => g.kind === "embedding");
  assert.deepEqual(embedding.map((g) => [g.name, g.size.channels]), [["patch", 16]]);
  // The bottleneck of the SE block may be pruned as hidden channels, never as the width.
  assert.ok(
    !report.groups.some((g) => g.name === "se_reduce" && g.kind !== "mlp"),
    "SE channels are not the embedding width",
  );
  // The embedding width (16) prunes through the SE block's convolutions, ≡ masked.
  const { difference, effect } = await maskingCheck(encodeModel(seStemModel()), {
    embeddingPruningRatio: 0.5,
    core,
  });
  assert.ok(effect > 1e-5, "vacuous");
  assert.ok(difference <= 1e-5, `pruned differs from masked by ${difference}`);
});

Deno.test("MACs of a model with symbolic dims say at what size they were counted", async () => {
  const bytes = await Deno.readFile(new URL("float16_bert.onnx", ZOO));
  const { report } = await pruneModel(decodeModel(bytes), {
    pruningRatio: 0.5,
    dimValues: { sequence: 16 },
    core,
  });
  assert.deepEqual(report.macs.at, { batch: 1, sequence: 16 });
  assert.match(formatReport(report), /^MACs .* at batch=1, sequence=16$/m);
  // Static inputs: no sizes to state.
  const fixed = await pruneModel(attentionModel("Identity"), { pruningRatio: 0.5, core });
  assert.equal(fixed.report.macs.at, undefined);
  assert.doesNotMatch(formatReport(fixed.report), / at /);
});
