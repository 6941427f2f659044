/**
 * Fused attention ops as onnxruntime's tools write them (scripts/fixtures/zoo/fused_attention.py):
 * heads, head dims and MLP channels pruned ≡ masked on the optimizer's Attention and
 * MultiHeadAttention and on onnxruntime-genai's GroupQueryAttention, the ops' head attributes
 * rewritten, and what cannot be pruned refused with the node and the reason.
 */
import assert from "node:assert/strict";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import type { ModelProto } from "../src/onnx/proto.ts";
import { attr } from "../src/graph/graph.ts";
import { pruneModel, type RunOptions } from "../src/prune.ts";
import { maskingCheck } from "../src/verify.ts";
import { createCore } from "../src/core/mod.ts";
import { createSession, loadOrt, type OrtTensor } from "../src/runtime/ort.ts";
import { tensorDims } from "../src/onnx/tensor.ts";

const ZOO = new URL("./fixtures/zoo/", import.meta.url);
const read = (name: string) => Deno.readFile(new URL(`${name}.onnx`, ZOO));
const core = await createCore({ backend: "cpu" });

const HEADS: RunOptions = { pruneNumHeads: true, headPruningRatio: 0.5 };
const DIMS: RunOptions = { pruneHeadDims: true, headPruningRatio: 0.5 };
const MLP: RunOptions = { pruningRatio: 0.5 };

async function exact(name: string, options: RunOptions) {
  const check = await maskingCheck(await read(name), { ...options, core });
  assert.ok(check.difference <= 1e-4, `${name}: |pruned − masked| ${check.difference}`);
  assert.ok(check.effect > 1e-5, `${name}: the removed channels changed nothing`);
  return check.pruned;
}

/** Attributes of the nodes of one op type, in graph order. */
function opAttributes(model: ModelProto, opType: string, names: string[]) {
  return model.graph!.node!.filter((n) => n.opType === opType).map((n) =>
    Object.fromEntries(names.map((a) => [a, attr(n as Parameters<typeof attr>[0], a)]))
  );
}

function initializerDims(model: ModelProto, name: string): number[] {
  const t = model.graph!.initializer!.find((x) => x.name === name);
  assert.ok(t, `initializer ${name}`);
  return tensorDims(t);
}

Deno.test("Attention (optimizer, packed qkv weight): heads pruned ≡ masked, num_heads rewritten", async () => {
  const { model, report } = await exact("fused_bert_attention", HEADS);
  assert.deepEqual(opAttributes(model, "Attention", ["num_heads"]), [{ num_heads: 2 }, {
    num_heads: 2,
  }]);
  assert.deepEqual(initializerDims(model, "Attention_0_qkv_weight"), [32, 48]);
  assert.equal(report.blocks.filter((b) => b.kind === "attention").length, 2);
});

Deno.test("Attention (optimizer): head dims pruned ≡ masked, the original scale kept", async () => {
  const { model } = await exact("fused_bert_attention", DIMS);
  const attrs = opAttributes(model, "Attention", ["num_heads", "scale"]);
  for (const a of attrs) {
    assert.equal(a.num_heads, 4);
    // 1/sqrt(8): the head size before pruning (float32)
    assert.ok(Math.abs((a.scale as number) - 1 / Math.sqrt(8)) < 1e-7, `scale ${a.scale}`);
  }
  assert.deepEqual(initializerDims(model, "Attention_0_qkv_bias"), [48]);
});

Deno.test("Attention (optimizer): MLP channels pruned ≡ masked", async () => {
  await exact("fused_bert_attention", MLP);
});

Deno.test("MultiHeadAttention (q, k, v MatMuls, packed bias): heads, dims and MLP ≡ masked", async () => {
  const heads = await exact("fused_bert_mha", HEADS);
  assert.deepEqual(
    opAttributes(heads.model, "MultiHeadAttention", ["num_heads"]).map((a) => a.num_heads),
    [2, 2],
  );
  const dims = await exact("fused_bert_mha", DIMS);
  for (const a of opAttributes(dims.model, "MultiHeadAttention", ["num_heads", "scale"])) {
    assert.equal(a.num_heads, 4);
    assert.ok(Math.abs((a.scale as number) - 1 / Math.sqrt(8)) < 1e-7);
  }
  await exact("fused_bert_mha", MLP);
});

Deno.test("GroupQueryAttention (genai, q, k, v MatMuls): query heads and KV heads ≡ masked", async () => {
  const query = await exact("fused_llama_gqa_prefill", HEADS);
  const names = ["num_heads", "kv_num_heads"];
  assert.deepEqual(opAttributes(query.model, "GroupQueryAttention", names), [
    { num_heads: 2, kv_num_heads: 2 },
    { num_heads: 2, kv_num_heads: 2 },
  ]);
  const kv = await exact("fused_llama_gqa_prefill", { ...HEADS, gqaPolicy: "kv-groups" });
  assert.deepEqual(opAttributes(kv.model, "GroupQueryAttention", names), [
    { num_heads: 2, kv_num_heads: 1 },
    { num_heads: 2, kv_num_heads: 1 },
  ]);
  await exact("fused_llama_gqa_prefill", MLP);
});

Deno.test("GroupQueryAttention with rotary embedding: head dims refused, the node and RoPE named", async () => {
  const bytes = await read("fused_llama_gqa_prefill");
  await assert.rejects(
    () => pruneModel(decodeModel(bytes), { ...DIMS, core }),
    /GroupQueryAttention node "\/model\/layers\.0\/attn\/GroupQueryAttention": rotary position embedding \(RoPE\)/,
  );
});

Deno.test("GroupQueryAttention on a packed q|k|v input: heads, KV heads and MLP ≡ masked", async () => {
  for (const gqaPolicy of ["query-heads", "kv-groups"] as const) {
    const pruned = await exact("fused_llama_gqa_packed_prefill", { ...HEADS, gqaPolicy });
    const [gqa] = opAttributes(pruned.model, "GroupQueryAttention", ["num_heads", "kv_num_heads"]);
    assert.deepEqual(
      gqa,
      gqaPolicy === "kv-groups"
        ? { num_heads: 2, kv_num_heads: 1 }
        : { num_heads: 2, kv_num_heads: 2 },
    );
  }
  await exact("fused_llama_gqa_packed_prefill", MLP);
});

/**
 * One decoding step with a cache of 3 positions: logits and present key/values. `keptBy`: the KV
 * heads each layer keeps (its cache holds only those; the same past values are fed for them).
 */
async function decodeStep(
  bytes: Uint8Array,
  keptBy: number[][] = [[0, 1], [0, 1]],
): Promise<Float32Array[]> {
  const ort = await loadOrt();
  const feeds: Record<string, OrtTensor> = {
    input_ids: new ort.Tensor("int64", BigInt64Array.from([5n, 9n]), [2, 1]),
    attention_mask: new ort.Tensor("int64", new BigInt64Array(8).fill(1n), [2, 4]),
  };
  for (const i of [0, 1]) {
    const kept = keptBy[i];
    for (const kind of ["key", "value"]) {
      // [batch 2, KV head, position 3, dim 16], each value set by its full-cache coordinates.
      const x = Float32Array.from({ length: 2 * kept.length * 3 * 16 }, (_, j) => {
        const [b, h, r] = [
          Math.floor(j / (kept.length * 48)),
          Math.floor(j / 48) % kept.length,
          j % 48,
        ];
        return Math.sin(((b * 2 + kept[h]) * 48 + r) * 0.3 + i);
      });
      feeds[`past_key_values.${i}.${kind}`] = new ort.Tensor("float32", x, [2, kept.length, 3, 16]);
    }
  }
  const session = await createSession(bytes);
  try {
    const out = await session.run(feeds);
    return session.outputNames.map((n) => out[n].data as Float32Array);
  } finally {
    await session.release?.();
  }
}

Deno.test("GroupQueryAttention with a KV cache: query heads pruned ≡ masked on a decoding step", async () => {
  const bytes = await read("fused_llama_gqa_split");
  const options: RunOptions = { ...HEADS, core, dimValues: { kv_cache_dim: 16 } };
  const pruned = await pruneModel(decodeModel(bytes), options);
  const masked = await pruneModel(decodeModel(bytes), { ...options, mask: true });
  const [yp, ym, yo] = [
    await decodeStep(encodeModel(pruned.model)),
    await decodeStep(encodeModel(masked.model)),
    await decodeStep(bytes),
  ];
  let difference = 0, effect = 0;
  yp.forEach((y, k) =>
    y.forEach((v, i) => {
      difference = Math.max(difference, Math.abs(v - ym[k][i]));
      effect = Math.max(effect, Math.abs(ym[k][i] - yo[k][i]));
    })
  );
  assert.ok(difference <= 1e-4, `|pruned − masked| ${difference}`);
  assert.ok(effect > 1e-5);
  // The cache keeps its KV heads: the graph inputs and outputs are unchanged.
  assert.deepEqual(
    opAttributes(pruned.model, "GroupQueryAttention", ["kv_num_heads"]).map((a) => a.kv_num_heads),
    [2, 2],
  );
});

Deno.test("GroupQueryAttention with a KV cache: whole KV heads pruned ≡ masked, the cache shrinks", async () => {
  const bytes = await read("fused_llama_gqa_split");
  const options: RunOptions = {
    ...HEADS,
    gqaPolicy: "kv-groups",
    core,
    dimValues: { kv_cache_dim: 16, sequence_length: 1 },
  };
  const pruned = await pruneModel(decodeModel(bytes), options);
  const masked = await pruneModel(decodeModel(bytes), { ...options, mask: true });
  const kvKept = pruned.report.blocks.flatMap((b) =>
    b.kind === "attention" && b.kvHeads ? [b.kvHeads.after] : []
  );
  assert.deepEqual(kvKept, [1, 1]);
  const interfaces = pruned.report.interfaces ?? [];
  assert.equal(interfaces.length, 8, "4 cache inputs and 4 present outputs change shape");
  const keptOf = (name: string) => {
    const change = interfaces.find((c) => c.name === name);
    assert.ok(change, name);
    return change.kept.find((k) => k.axis === 1)!.indices;
  };
  const keptBy = [keptOf("past_key_values.0.key"), keptOf("past_key_values.1.key")];
  const [yp, ym] = [
    await decodeStep(encodeModel(pruned.model), keptBy),
    await decodeStep(encodeModel(masked.model)),
  ];
  // Logits compared whole; each present on its layer's kept KV head (masked presents keep all).
  let difference = Math.max(...yp[0].map((v, i) => Math.abs(v - ym[0][i])));
  const names = pruned.model.graph!.output!.map((o) => o.name!);
  for (let o = 1; o < yp.length; o++) {
    const layer = Number(/present\.(\d+)\./.exec(names[o])![1]);
    const per = yp[o].length / 2; // [2, 1, 4, 16]: one head per batch row
    for (let b = 0; b < 2; b++) {
      for (let j = 0; j < per; j++) {
        const full = ym[o][(b * 2 + keptBy[layer][0]) * per + j];
        difference = Math.max(difference, Math.abs(yp[o][b * per + j] - full));
      }
    }
  }
  assert.ok(difference <= 1e-4, `|pruned − masked| ${difference}`);
  assert.deepEqual(
    opAttributes(pruned.model, "GroupQueryAttention", ["num_heads", "kv_num_heads"]),
    [{ num_heads: 2, kv_num_heads: 1 }, { num_heads: 2, kv_num_heads: 1 }],
  );
});

Deno.test("MACs of the fused ops: Attention and MultiHeadAttention count as the same block", async () => {
  const [fused, mha] = [
    await pruneModel(decodeModel(await read("fused_bert_attention")), { ...HEADS, core }),
    await pruneModel(decodeModel(await read("fused_bert_mha")), { ...HEADS, core }),
  ];
  assert.deepEqual(fused.report.macs, mha.report.macs);
  // Per block: the q|k|v projection (8·32·96) and Q·Kᵀ + P·V (8·8·(32 + 32)), twice.
  const mlpAndOut = 2 * (8 * 32 * 32 + 2 * 8 * 32 * 64);
  assert.equal(fused.report.macs.before, mlpAndOut + 2 * (8 * 32 * 96 + 8 * 8 * 64));
  assert.ok(fused.report.macs.after < fused.report.macs.before);
});
