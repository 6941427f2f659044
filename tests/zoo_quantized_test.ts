/**
 * Quantized exports of the zoo (`scripts/fixtures/zoo/quantized.py`): onnxruntime's
 * quantize_dynamic (MatMulInteger, and the fused DynamicQuantizeMatMul / MatMulIntegerToFloat),
 * QDQ static quantization (per-tensor and per-channel weight scales) and block-wise 4-bit
 * MatMulNBits, each pruned and compared with the same channels masked in the original.
 *
 * Outputs are compared with onnxruntime's graph optimisations off: the ops' own semantics. With
 * them on, QDQ pairs become integer kernels whose float rounding differs with the width of the
 * sum, and a rounding that flips an activation's quantization step moves it by a whole step.
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { pruneModel, type PruneResult, type RunOptions } from "../src/prune.ts";
import { createSession } from "../src/runtime/ort.ts";
import { syntheticFeeds } from "../src/verify.ts";
import { tensorDims } from "../src/onnx/tensor.ts";
import { attrInt } from "../src/graph/graph.ts";
import type { ModelProto } from "../src/onnx/proto.ts";

const ZOO = new URL("./fixtures/zoo/", import.meta.url);
const core = await createCore({ backend: "cpu" });

const MODES: Record<string, RunOptions> = {
  heads: { pruneNumHeads: true, headPruningRatio: 0.5 },
  dims: { pruneHeadDims: true, headPruningRatio: 0.5 },
  mlp: { pruningRatio: 0.5 },
};

interface Check {
  difference: number;
  effect: number;
  pruned: PruneResult;
}

const cache = new Map<string, Promise<Check>>();

/** Pruned vs masked vs original on the same synthetic inputs, optimisations off. */
function check(file: string, mode: string): Promise<Check> {
  const key = `${file} ${mode}`;
  if (!cache.has(key)) cache.set(key, run(file, MODES[mode]));
  return cache.get(key)!;
}

async function run(file: string, options: RunOptions): Promise<Check> {
  const bytes = await Deno.readFile(new URL(file, ZOO));
  const feeds = await syntheticFeeds(decodeModel(bytes));
  const output = async (model: Uint8Array) => {
    const session = await createSession(model, { graphOptimizationLevel: "disabled" });
    try {
      const out = await session.run(feeds);
      return out[session.outputNames[0]].data as Float32Array;
    } finally {
      await session.release?.();
    }
  };
  const pruned = await pruneModel(decodeModel(bytes), { ...options, core });
  const masked = await pruneModel(decodeModel(bytes), { ...options, core, mask: true });
  const [yp, ym, yo] = [
    await output(encodeModel(pruned.model)),
    await output(encodeModel(masked.model)),
    await output(bytes),
  ];
  let difference = 0, effect = 0;
  for (let i = 0; i < yp.length; i++) {
    difference = Math.max(difference, Math.abs(yp[i] - ym[i]));
    effect = Math.max(effect, Math.abs(yo[i] - ym[i]));
  }
  return { difference, effect, pruned };
}

/** Cells pruned exactly: pruned ≡ masked at rounding level, with a real effect. */
const EXACT = [
  ...[
    "quant_dynamic_vit",
    "quant_dynamic_vit_perchannel",
    "quant_dynamic_bert_perchannel",
    // The optimizer's FusedMatMul carries Q·Kᵀ.
    "quant_dynamic_bert_fused",
  ].flatMap((f) => ["heads", "dims", "mlp"].map((m) => [f, m])),
  ...["quant_qdq_vit", "quant_qdq_vit_perchannel", "quant_qdq_bert_perchannel"]
    .flatMap((f) => ["heads", "dims", "mlp"].map((m) => [f, m])),
  // Heads of 16 dims are whole blocks of 16: cut without re-quantizing.
  ["quant_nbits_llama_b16", "heads"],
];

for (const [file, mode] of EXACT) {
  Deno.test(`quantized ${file} ${mode}: pruned ≡ masked`, async () => {
    const { difference, effect, pruned } = await check(`${file}.onnx`, mode);
    assert.ok(difference <= 1e-4, `|pruned − masked| = ${difference}`);
    assert.ok(effect > 1e-3, `masking had no effect (${effect})`);
    const { params, macs } = pruned.report;
    assert.ok(params.after < params.before, `params ${params.before} → ${params.after}`);
    assert.ok(macs.after < macs.before, `MACs ${macs.before} → ${macs.after}`);
    assert.ok(!pruned.report.notes.some((n) => n.includes("re-quantized")));
  });
}

function nodesOf(model: ModelProto, op: string) {
  return model.graph!.node!.filter((n) => n.opType === op);
}

function initializerDims(model: ModelProto, name: string): number[] {
  const t = model.graph!.initializer!.find((i) => i.name === name);
  assert.ok(t, `initializer ${name}`);
  return tensorDims(t);
}

Deno.test("quantized per-channel scales and zero points are cut with their channels", async () => {
  for (const file of ["quant_qdq_vit_perchannel", "quant_dynamic_bert_perchannel"]) {
    const { pruned } = await check(`${file}.onnx`, "mlp");
    const model = pruned.model;
    let cut = 0;
    for (const dq of nodesOf(model, "DequantizeLinear")) {
      const w = model.graph!.initializer!.find((i) => i.name === dq.input![0]);
      if (!w || tensorDims(w).length !== 2) continue;
      const axis = attrInt(dq as never, "axis", 1);
      assert.deepEqual(initializerDims(model, dq.input![1]!), [tensorDims(w)[axis]]);
      assert.deepEqual(initializerDims(model, dq.input![2]!), [tensorDims(w)[axis]]);
      if (tensorDims(w).includes(64) && tensorDims(w).length === 2) cut++;
    }
    for (const mm of nodesOf(model, "MatMulInteger")) {
      const [, n] = initializerDims(model, mm.input![1]!);
      assert.deepEqual(initializerDims(model, mm.input![3]!), [n]);
      cut++;
    }
    assert.ok(cut > 0, `${file}: no quantized layer found`);
  }
});

Deno.test("quantized MatMulNBits heads: whole blocks cut, K and N rewritten", async () => {
  const { pruned } = await check("quant_nbits_llama_b16.onnx", "heads");
  const nbits = nodesOf(pruned.model, "MatMulNBits");
  const attrs = (
    n: (typeof nbits)[0],
  ) => [attrInt(n as never, "K", 0), attrInt(n as never, "N", 0)];
  // q/k/v: 64 → 32 outputs; o_proj: 32 → 64; weights [N, K / 16, 8], scales [N, K / 16].
  const [q, , , o] = nbits;
  assert.deepEqual(attrs(q), [64, 32]);
  assert.deepEqual(attrs(o), [32, 64]);
  assert.deepEqual(initializerDims(pruned.model, o.input![1]!), [64, 2, 8]);
  assert.deepEqual(initializerDims(pruned.model, o.input![2]!), [64, 2]);
});

/**
 * Kept input channels that are not whole blocks (per-head dims, MLP channels) are re-quantized
 * to the same block size: not exact, said in the report, and within the error of a 4-bit grid
 * (a tenth of what the removed channels did).
 */
for (
  const [file, mode] of [
    ["quant_nbits_bert_b32", "dims"],
    ["quant_nbits_bert_b32", "mlp"],
    ["quant_nbits_llama_b16", "mlp"],
  ]
) {
  Deno.test(`quantized ${file} ${mode}: re-quantized blocks, said so`, async () => {
    const { difference, effect, pruned } = await check(`${file}.onnx`, mode);
    assert.ok(pruned.report.notes.some((n) => n.includes("re-quantized")), "no note");
    assert.ok(effect > 1e-3, `masking had no effect (${effect})`);
    assert.ok(difference < 0.15 * effect, `|pruned − masked| ${difference} vs effect ${effect}`);
  });
}

Deno.test("quantized scores come from dequantized values, not the raw integers", async () => {
  // One float model quantized two ways (uint8 weights with zero points near 128, and int8
  // symmetric): scored on real values, they keep nearly the same MLP channels.
  const kept = async (file: string) => {
    const { pruned } = await check(`${file}.onnx`, "mlp");
    return pruned.report.blocks.filter((b) => b.kind === "mlp").flatMap((b) =>
      "keptChannels" in b ? b.keptChannels! : []
    );
  };
  const a = await kept("quant_dynamic_vit_perchannel");
  const b = new Set(await kept("quant_qdq_vit_perchannel"));
  const same = a.filter((c) => b.has(c)).length;
  assert.ok(same >= 0.9 * a.length, `${same} of ${a.length} kept channels agree`);
});

Deno.test("quantized Llama head dims under RoPE are refused with the node named", async () => {
  await assert.rejects(
    () => check("quant_nbits_llama_b16.onnx", "dims"),
    /no attention block can be pruned \(rotary position embedding \(RoPE, \w+ node "[^"]+"/,
  );
});
