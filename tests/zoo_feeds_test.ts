/**
 * The oracle's inputs and outputs: synthetic feeds for every input dtype with symbolic dims made
 * consistent (a cache length, a total = cache + new), overrides, every float output compared,
 * float16 models run through float32 edges.
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import { onnx } from "../src/onnx/proto.ts";
import type { ModelProto } from "../src/onnx/proto.ts";
import { loadOrt, ortToFloat64Array } from "../src/runtime/ort.ts";
import { maskingCheck, syntheticDims, syntheticFeeds } from "../src/verify.ts";

const core = await createCore({ backend: "cpu" });

/** A graph with these inputs only (syntheticFeeds reads nothing else). */
function inputsOnly(inputs: [string, number, (number | string)[]][]): ModelProto {
  return onnx.ModelProto.create({
    graph: {
      input: inputs.map(([name, elemType, dims]) => ({
        name,
        type: {
          tensorType: {
            elemType,
            shape: {
              dim: dims.map((d) => typeof d === "number" ? { dimValue: d } : { dimParam: d }),
            },
          },
        },
      })),
    },
  });
}

const DECODER = inputsOnly([
  ["input_ids", 7, ["batch_size", "sequence_length"]],
  ["position_ids", 6, ["batch_size", "sequence_length"]],
  ["attention_mask", 7, ["batch_size", "total_sequence_length"]],
  ["causal_mask", 9, ["batch_size", "past_sequence_length + 1"]],
  ["past_key_values.0.key", 10, ["batch_size", 2, "past_sequence_length", 8]],
  ["past_key_values.0.value", 1, ["batch_size", 2, "past_seq_len", 8]],
  ["scale", 11, [1]],
]);

Deno.test("synthetic dims: batch 2, cache 4, new tokens 8, totals the sum of their parts", () => {
  assert.deepEqual(syntheticDims(DECODER), {
    batch_size: 2,
    sequence_length: 8,
    total_sequence_length: 12,
    "past_sequence_length + 1": 5,
    past_sequence_length: 4,
    past_seq_len: 4,
  });
  const given = syntheticDims(DECODER, { sequence_length: 3, past_sequence_length: 6 });
  assert.equal(given.total_sequence_length, 9);
  assert.equal(given["past_sequence_length + 1"], 7);
  assert.equal(given.past_seq_len, 4); // another name: its own default
});

Deno.test("synthetic dims: a dim only attention masks have is the total where a cache exists", () => {
  const dynamo = inputsOnly([
    ["input_ids", 7, ["batch_size", "sequence_length"]],
    ["attention_mask", 7, ["batch_size", "s53"]],
    ["past_key_values.0.key", 1, ["batch_size", 2, "past_sequence_length", 8]],
  ]);
  assert.equal(syntheticDims(dynamo).s53, 12);
  const noCache = inputsOnly([
    ["input_ids", 7, ["batch", "s0"]],
    ["attention_mask", 7, ["batch", "s1"]],
  ]);
  assert.deepEqual(syntheticDims(noCache), { batch: 2, s0: 8, s1: 8 });
});

Deno.test("synthetic feeds: every input dtype, ids below 50, masks of ones, positions after the cache", async () => {
  const feeds = await syntheticFeeds(DECODER);
  assert.deepEqual(
    Object.fromEntries(Object.entries(feeds).map(([n, t]) => [n, [t.type, t.dims.join("x")]])),
    {
      input_ids: ["int64", "2x8"],
      position_ids: ["int32", "2x8"],
      attention_mask: ["int64", "2x12"],
      causal_mask: ["bool", "2x5"],
      "past_key_values.0.key": ["float16", "2x2x4x8"],
      "past_key_values.0.value": ["float32", "2x2x4x8"],
      scale: ["float64", "1"],
    },
  );
  const ids = [...(feeds.input_ids.data as BigInt64Array)].map(Number);
  assert.ok(ids.every((i) => i >= 1 && i <= 50) && new Set(ids).size > 1);
  assert.ok([...(feeds.attention_mask.data as BigInt64Array)].every((v) => v === 1n));
  assert.ok([...(feeds.causal_mask.data as Uint8Array)].every((v) => v === 1));
  assert.deepEqual([...(feeds.position_ids.data as Int32Array)].slice(0, 8), [
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
  ]);
  const key = ortToFloat64Array(feeds["past_key_values.0.key"]);
  assert.ok(Math.abs(key[1] - Math.sin(0.37)) < 1e-3);

  const ort = await loadOrt();
  const own = new ort.Tensor("int64", new BigInt64Array(6), [2, 3]);
  const given = await syntheticFeeds(DECODER, { feeds: { input_ids: own } });
  assert.equal(given.input_ids, own);
});

Deno.test("masking check: every float output compared (BERT: last_hidden_state and pooler)", async () => {
  const bytes = await Deno.readFile(new URL("./fixtures/zoo/hf_bert.onnx", import.meta.url));
  const check = await maskingCheck(bytes, { pruneNumHeads: true, headPruningRatio: 0.5, core });
  assert.deepEqual(check.outputs.map((o) => [o.name, o.type, o.reshaped]), [
    ["last_hidden_state", "float32", false],
    ["pooler_output", "float32", false],
  ]);
  for (const o of check.outputs) assert.ok(o.difference <= 1e-4 && o.effect > 1e-5, o.name);
  assert.equal(check.float16, false);
});

Deno.test("masking check: a float16 model in and out through float32 edges", async () => {
  const bytes = await Deno.readFile(new URL("./fixtures/timm_vit_f16.onnx", import.meta.url));
  const check = await maskingCheck(bytes, { pruningRatio: 0.5, core });
  assert.equal(check.float16, true);
  assert.deepEqual(check.outputs.map((o) => o.type), ["float16"]);
  assert.ok(check.difference <= 2e-2 && check.effect > 1e-5, `${check.difference}`);
});
