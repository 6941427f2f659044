/**
 * End-to-end pruning of real exporter graphs (timm fused qkv, timm via the dynamo exporter,
 * torchvision nn.MultiheadAttention, HF separate q/k/v): the pruned model must compute exactly
 * what the original computes with the same channels zeroed (the masking oracle), under
 * onnxruntime, and the parameter count must drop by what the removed channels own.
 */
import assert from "node:assert/strict";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { prune, pruneModel, type RunOptions } from "../src/prune.ts";
import { createCore } from "../src/core/mod.ts";
import { createSession, loadOrt } from "../src/runtime/ort.ts";
import { type ModelProto, onnx } from "../src/onnx/proto.ts";
import { tensorDims } from "../src/onnx/tensor.ts";
import { probeTensors } from "../src/runtime/probe.ts";
import { Graph, type GraphProto } from "../src/graph/graph.ts";
import type { AttentionBlockReport, MlpBlockReport } from "../src/report.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const EXPORTS = ["timm_vit", "timm_vit_dynamo", "torchvision_vit", "hf_vit"];

const MODES: Record<string, RunOptions> = {
  heads: { pruneNumHeads: true, headPruningRatio: 0.5 },
  dims: { pruneHeadDims: true, headPruningRatio: 0.5 },
  mlp: { pruningRatio: 0.5 },
  "heads+mlp": { pruneNumHeads: true, headPruningRatio: 0.25, pruningRatio: 0.3, roundTo: 8 },
  "dims+mlp l1": {
    pruneHeadDims: true,
    headPruningRatio: 0.25,
    pruningRatio: 0.5,
    criterion: "l1",
  },
};

async function fixture(name: string): Promise<Uint8Array> {
  return await Deno.readFile(new URL(`${name}.onnx`, FIXTURES));
}

/** Deterministic pseudo-normal input (batch 3 exercises the dynamic batch axis). */
function input(batch: number): Float32Array {
  const x = new Float32Array(batch * 3 * 32 * 32);
  let s = 12345;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const u = s / 2147483648;
    x[i] = Math.sqrt(-2 * Math.log(u + 1e-9)) * Math.cos(2 * Math.PI * ((i * 0.618) % 1));
  }
  return x;
}

/**
 * A float16 model with float32 input and output cast inside: onnxruntime-node under Deno cannot
 * exchange float16 buffers (the web runtime can).
 */
function floatIO(bytes: Uint8Array): Uint8Array {
  const model = decodeModel(bytes);
  const graph = model.graph!;
  const input = graph.input![0];
  graph.node!.unshift(onnx.NodeProto.create({
    opType: "Cast",
    input: ["input_float32"],
    output: [input.name!],
    attribute: [onnx.AttributeProto.create({ name: "to", type: 2, i: 10 })],
  }));
  graph.input![0] = onnx.ValueInfoProto.create({
    name: "input_float32",
    type: { tensorType: { elemType: 1, shape: input.type!.tensorType!.shape } },
  });
  const output = graph.output![0];
  graph.node!.push(onnx.NodeProto.create({
    opType: "Cast",
    input: [output.name!],
    output: ["output_float32"],
    attribute: [onnx.AttributeProto.create({ name: "to", type: 2, i: 1 })],
  }));
  graph.output![0] = onnx.ValueInfoProto.create({
    name: "output_float32",
    type: { tensorType: { elemType: 1, shape: output.type!.tensorType!.shape } },
  });
  return encodeModel(model);
}

async function run(bytes: Uint8Array, batch = 3, half = false): Promise<Float32Array> {
  const ort = await loadOrt();
  const session = await createSession(half ? floatIO(bytes) : bytes);
  const x = new ort.Tensor("float32", input(batch), [batch, 3, 32, 32]);
  const out = await session.run({ [session.inputNames[0]]: x });
  return out[session.outputNames[0]].data as Float32Array;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** Every static dim the pruned model declares (value_info, inputs) matches what onnxruntime computes. */
async function assertDeclaredShapesHold(model: ModelProto) {
  const probed = await probeTensors(model);
  const graph = model.graph!;
  for (const t of graph.initializer ?? []) probed.set(t.name!, { dims: tensorDims(t) });
  for (const vi of [...(graph.valueInfo ?? []), ...(graph.input ?? [])]) {
    const actual = probed.get(vi.name!)?.dims;
    const declared = vi.type?.tensorType?.shape?.dim ?? [];
    if (!actual) continue;
    declared.forEach((d, i) => {
      // The probe runs at batch 1: dim 0 of activations may be declared for another batch.
      const isWeight = (graph.initializer ?? []).some((t) => t.name === vi.name);
      if (d.dimValue != null && !d.dimParam && (i > 0 || isWeight)) {
        assert.equal(Number(d.dimValue), actual[i], `declared dim ${i} of "${vi.name}"`);
      }
    });
  }
}

const core = await createCore({ backend: "cpu" });

/** Prunes and masks the same channels; asserts onnxruntime gives the same outputs for both (and
 * that masking changed them, so the check is not vacuous). Returns the pruning result. */
async function prunedEqualsMasked(original: Uint8Array, options: RunOptions) {
  const pruned = await pruneModel(decodeModel(original), { ...options, core });
  const masked = await pruneModel(decodeModel(original), { ...options, core, mask: true });
  const [yp, ym, yo] = await Promise.all([
    run(encodeModel(pruned.model)),
    run(encodeModel(masked.model)),
    run(original),
  ]);
  assert.ok(maxAbsDiff(ym, yo) > 1e-4, "masking changed nothing: the test would be vacuous");
  assert.ok(maxAbsDiff(yp, ym) <= 1e-4, `pruned differs from masked by ${maxAbsDiff(yp, ym)}`);
  return pruned;
}

for (const name of EXPORTS) {
  Deno.test(`${name}: ratio 0 leaves the model byte-identical`, async () => {
    const original = await fixture(name);
    const { bytes, report } = await prune(original, { pruningRatio: 0, core });
    assert.deepEqual(bytes, original);
    assert.equal(report.params.after, report.params.before);
    assert.deepEqual(await run(bytes), await run(original));
  });

  for (const [mode, options] of Object.entries(MODES)) {
    Deno.test(`${name}: ${mode} — pruned ≡ masked under onnxruntime`, async () => {
      const original = await fixture(name);
      const pruned = await prunedEqualsMasked(original, options);

      const report = pruned.report;
      const attention = report.blocks.filter((b) =>
        b.kind === "attention"
      ) as AttentionBlockReport[];
      const mlp = report.blocks.filter((b) => b.kind === "mlp") as MlpBlockReport[];
      assert.equal(attention.length, 2, "two attention blocks");
      assert.equal(mlp.length, 2, "two MLP blocks");
      // Independent parameter count: what the removed channels own in an E=64 ViT.
      const E = 64;
      let removed = 0;
      for (const a of attention) {
        assert.equal(a.heads.before, 4);
        assert.equal(a.headDim.before, 16);
        const before = a.heads.before * a.headDim.before;
        const after = a.heads.after * a.headDim.after;
        removed += (before - after) * (3 * (E + 1) + E); // q, k, v rows + biases, proj columns
        if (options.pruneNumHeads) {
          assert.equal(a.heads.after, 4 - Math.ceil(options.headPruningRatio! * 4));
        }
        if (options.pruneHeadDims) {
          assert.equal(a.headDim.after, Math.trunc(16 * (1 - options.headPruningRatio!)));
        }
        assert.equal(new Set(a.keptHeads).size, a.heads.after);
      }
      for (const m of mlp) {
        removed += (m.channels.before - m.channels.after) * (E + 1 + E); // fc1 rows + bias, fc2 cols
        if (options.pruningRatio) assert.ok(m.channels.after < m.channels.before);
        if (options.roundTo) assert.equal(m.channels.after % options.roundTo, 0);
      }
      assert.equal(report.params.before - report.params.after, removed);
      await assertDeclaredShapesHold(pruned.model);
      const dead = (m: ModelProto) => new Graph(m.graph as GraphProto).deadParts();
      const deadAfter = dead(pruned.model), deadBefore = dead(decodeModel(original));
      assert.equal(deadAfter.initializers.size, deadBefore.initializers.size, "orphaned weights");
      assert.equal(deadAfter.nodes.size, deadBefore.nodes.size, "orphaned nodes");
      assert.ok(report.macs.after < report.macs.before);
    });
  }
}

for (const name of EXPORTS) {
  Deno.test(`${name}: a model down to one head per block is pruned again ≡ masked`, async () => {
    // One head left has no head axis to see (size 1): the block is found through Q·Kᵀ → P·V.
    const one = await pruneModel(decodeModel(await fixture(name)), {
      pruneNumHeads: true,
      headPruningRatio: 0.75,
      core,
    });
    const original = encodeModel(one.model);
    const options: RunOptions = { pruneHeadDims: true, headPruningRatio: 0.5, pruningRatio: 0.5 };
    const pruned = await prunedEqualsMasked(original, options);
    const attention = pruned.report.blocks.filter((b) =>
      b.kind === "attention"
    ) as AttentionBlockReport[];
    assert.equal(attention.length, 2, "both single-head blocks found");
    for (const a of attention) {
      assert.deepEqual([a.heads.before, a.heads.after], [1, 1]);
      assert.deepEqual([a.headDim.before, a.headDim.after], [16, 8]);
    }
    await assertDeclaredShapesHold(pruned.model);
    // The last head stays: asking for fewer heads than one is refused, naming the block.
    await assert.rejects(
      () => pruneModel(decodeModel(original), { pruneNumHeads: true, headPruningRatio: 0.5, core }),
      /head/,
    );
  });
}

Deno.test("float16 model: heads, dims and MLP pruned ≡ masked (f16 tolerance)", async () => {
  const original = await fixture("timm_vit_f16");
  for (const options of [MODES.heads, MODES.dims, MODES.mlp]) {
    const pruned = await pruneModel(decodeModel(original), { ...options, core });
    const masked = await pruneModel(decodeModel(original), { ...options, core, mask: true });
    const yp = await run(encodeModel(pruned.model), 3, true);
    const ym = await run(encodeModel(masked.model), 3, true);
    const yo = await run(original, 3, true);
    assert.ok(
      maxAbsDiff(ym, yo) > 1e-2,
      `masking changed nothing (${maxAbsDiff(ym, yo)}, ${yo.slice(0, 4)})`,
    );
    assert.ok(maxAbsDiff(yp, ym) <= 2e-3, `pruned differs from masked by ${maxAbsDiff(yp, ym)}`);
    assert.ok(pruned.report.params.after < pruned.report.params.before);
  }
});

Deno.test("an impossible head ratio is refused with the block named", async () => {
  const original = await fixture("timm_vit");
  await assert.rejects(
    () => prune(original, { pruneNumHeads: true, headPruningRatio: 0.9, core }),
    /would remove all 4 heads of attention block/,
  );
});

Deno.test("--num-heads must agree with the graph", async () => {
  const original = await fixture("hf_vit");
  await assert.rejects(
    () =>
      prune(original, {
        pruneNumHeads: true,
        headPruningRatio: 0.5,
        numHeads: { "/vit/layers.0/attention/q_proj/MatMul": 8 },
        core,
      }),
    /has 4 heads in the graph/,
  );
  const ok = await prune(original, {
    pruneNumHeads: true,
    headPruningRatio: 0.5,
    numHeads: { "/vit/layers.0/attention/q_proj/MatMul": 4 },
    core,
  });
  assert.equal(ok.report.blocks.filter((b) => b.kind !== "embedding").length, 4);
});

Deno.test("ignored layers keep their channels", async () => {
  const original = await fixture("timm_vit");
  const { report } = await prune(original, {
    pruningRatio: 0.5,
    ignore: ["/blocks/blocks.0/mlp/fc1/MatMul"],
    core,
  });
  const mlp = report.blocks.filter((b) => b.kind === "mlp") as MlpBlockReport[];
  assert.equal(mlp[0].channels.after, mlp[0].channels.before);
  assert.equal(mlp[1].channels.after, mlp[1].channels.before / 2);
});

Deno.test("per-layer ratios override the global one", async () => {
  const original = await fixture("timm_vit");
  const { report } = await prune(original, {
    pruningRatio: 0.5,
    layerRatios: { "/blocks/blocks.1/mlp/fc1": 0.25 },
    core,
  });
  const mlp = report.blocks.filter((b) => b.kind === "mlp") as MlpBlockReport[];
  assert.equal(mlp[0].channels.after, 128);
  assert.equal(mlp[1].channels.after, 192);
});

Deno.test("head-dim pruning keeps the original attention scale", async () => {
  // The TorchScript export computes 1/sqrt(head_dim) from the run-time shape: it must be frozen.
  const original = await fixture("timm_vit");
  const pruned = await pruneModel(decodeModel(original), {
    pruneHeadDims: true,
    headPruningRatio: 0.5,
    core,
  });
  assert.equal(pruned.stats.scalarsFrozen, 2);
});

Deno.test("a constant shared by layers pruned differently is copied, not cut for all", async () => {
  // Exporters de-duplicate equal initializers behind Identity nodes: make block 1's fc1 bias
  // read block 0's, then prune only block 1.
  const model = decodeModel(await fixture("timm_vit"));
  const graph = model.graph!;
  graph.node!.unshift(
    onnx.NodeProto.create({
      opType: "Identity",
      name: "shared_bias",
      input: ["blocks.0.mlp.fc1.bias"],
      output: ["shared_fc1_bias"],
    }),
  );
  const add = graph.node!.find((n) => n.name === "/blocks/blocks.1/mlp/fc1/Add")!;
  add.input![0] = "shared_fc1_bias";
  const shared = encodeModel(model);
  const options: RunOptions = { pruningRatio: 0.5, layerRatios: { "/blocks/blocks.0/": 0 }, core };
  const pruned = await pruneModel(decodeModel(shared), options);
  const masked = await pruneModel(decodeModel(shared), { ...options, mask: true });
  const mlp = pruned.report.blocks.filter((b) => b.kind === "mlp") as MlpBlockReport[];
  assert.deepEqual(mlp.map((m) => m.channels.after), [256, 128]);
  const [yp, ym, yo] = await Promise.all([
    run(encodeModel(pruned.model)),
    run(encodeModel(masked.model)),
    run(shared),
  ]);
  assert.ok(maxAbsDiff(ym, yo) > 1e-4);
  assert.ok(maxAbsDiff(yp, ym) <= 1e-4);
});

Deno.test("a shape constant shared by blocks with different head counts is copied", async () => {
  // The dynamo export uses one Reshape target for every block's qkv.
  const original = await fixture("timm_vit_dynamo");
  const options: RunOptions = {
    pruneNumHeads: true,
    headPruningRatio: 0.5,
    layerRatios: { node_MatMul_12: 0.25 },
    core,
  };
  const pruned = await pruneModel(decodeModel(original), options);
  const masked = await pruneModel(decodeModel(original), { ...options, mask: true });
  const heads =
    (pruned.report.blocks.filter((b) => b.kind === "attention") as AttentionBlockReport[])
      .map((a) => a.heads.after);
  assert.deepEqual(heads, [3, 2]);
  const d = maxAbsDiff(await run(encodeModel(pruned.model)), await run(encodeModel(masked.model)));
  assert.ok(d <= 1e-4, `pruned differs from masked by ${d}`);
});

Deno.test("weights held in Constant nodes are pruned like initializers", async () => {
  const model = decodeModel(await fixture("hf_vit"));
  const graph = model.graph!;
  const constants = graph.initializer!.map((t) =>
    onnx.NodeProto.create({
      opType: "Constant",
      name: `const_${t.name}`,
      output: [t.name!],
      attribute: [onnx.AttributeProto.create({ name: "value", type: 4, t })],
    })
  );
  graph.node!.unshift(...constants);
  graph.initializer = [];
  const bytes = encodeModel(model);
  for (const options of [MODES.heads, MODES.dims, MODES.mlp]) {
    const pruned = await pruneModel(decodeModel(bytes), { ...options, core });
    const masked = await pruneModel(decodeModel(bytes), { ...options, core, mask: true });
    assert.deepEqual(
      pruned.model.graph!.initializer!.map((t) => t.name),
      [],
      "weights stay in Constant nodes",
    );
    const [yp, ym, yo] = await Promise.all([
      run(encodeModel(pruned.model)),
      run(encodeModel(masked.model)),
      run(bytes),
    ]);
    assert.ok(maxAbsDiff(ym, yo) > 1e-4);
    assert.ok(maxAbsDiff(yp, ym) <= 1e-4, `pruned differs from masked by ${maxAbsDiff(yp, ym)}`);
    assert.ok(pruned.report.params.after < pruned.report.params.before);
  }
});

Deno.test("trained Fashion-MNIST ViT: pruned ≡ masked on real test images", async () => {
  const original = await fixture("fmnist_vit");
  const data = await Deno.readFile(new URL("fmnist_test_1000.bin", FIXTURES));
  const view = new DataView(data.buffer, data.byteOffset);
  assert.equal(new TextDecoder().decode(data.subarray(0, 8)), "FMNIST1K");
  const [rows, cols] = [view.getUint16(12, true), view.getUint16(14, true)];
  const n = 64, pixels = rows * cols;
  // Normalisation from tests/fixtures/fixtures.json: (pixel/255 − 0.286) / 0.353.
  const x = Float32Array.from(data.subarray(16, 16 + n * pixels), (p) => (p / 255 - 0.286) / 0.353);
  const ort = await loadOrt();
  const logits = async (bytes: Uint8Array) => {
    const session = await createSession(bytes);
    const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", x, [n, 1, rows, cols]) };
    return (await session.run(feeds))[session.outputNames[0]].data as Float32Array;
  };
  for (const options of [MODES.heads, MODES.dims, MODES.mlp, MODES["heads+mlp"]]) {
    const pruned = await pruneModel(decodeModel(original), { ...options, core });
    const masked = await pruneModel(decodeModel(original), { ...options, core, mask: true });
    const [yp, ym, yo] = await Promise.all([
      logits(encodeModel(pruned.model)),
      logits(encodeModel(masked.model)),
      logits(original),
    ]);
    assert.ok(maxAbsDiff(ym, yo) > 1e-3, "masking changed nothing");
    assert.ok(maxAbsDiff(yp, ym) <= 1e-4, `pruned differs from masked by ${maxAbsDiff(yp, ym)}`);
  }
});

Deno.test("nodes that were unused before pruning keep what they read", async () => {
  // An unused node reads the head size that the attention scale is computed from; freezing the
  // scale makes that computation unused too, but it must stay for the node that reads it.
  const model = decodeModel(await fixture("timm_vit"));
  model.graph!.node!.push(onnx.NodeProto.create({
    opType: "Identity",
    name: "unused_reader",
    input: ["/blocks/blocks.0/attn/Slice_output_0"],
    output: ["unused_head_size"],
  }));
  const bytes = encodeModel(model);
  const pruned = await pruneModel(decodeModel(bytes), { ...MODES.dims, core });
  assert.equal(pruned.stats.scalarsFrozen, 2);
  const out = await run(encodeModel(pruned.model));
  assert.equal(out.length, 30);
});
