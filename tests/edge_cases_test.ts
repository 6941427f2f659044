/**
 * Corner cases of the channel trace (`fixtures/edge/`, from `scripts/fixtures/make_edge_cases.py`):
 * each graph is either refused with a reason that names the node, or pruned into a model that
 * equals the masked original. Never a silently wrong model.
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import type { RunOptions } from "../src/prune.ts";
import { maskingCheck } from "../src/verify.ts";
import type { AttentionBlockReport } from "../src/report.ts";

const EDGE = new URL("./fixtures/edge/", import.meta.url);
const core = await createCore({ backend: "cpu" });
const MLP: RunOptions = { pruningRatio: 0.5 };
const HEADS: RunOptions = { pruneNumHeads: true, headPruningRatio: 0.5 };
const DIMS: RunOptions = { pruneHeadDims: true, headPruningRatio: 0.5 };

const REFUSED: [string, RunOptions, RegExp][] = [
  ["e1_softmax11", MLP, /Softmax node "sm": channels along the normalised axis/],
  ["e4_linear_nonlast_axis", MLP, /ReduceMean node "cmean"/],
  ["e6_reshape_as", MLP, /Reshape node "view_as": target dim 2 is read from an untracked tensor/],
  ["e7_gather_1d_index", MLP, /ReduceMean node "gmean"/],
  ["e7b_gather_transpose", MLP, /ReduceSum node "gsum"/],
  // The branches are traced: the reduction over the channels inside them is what stops them.
  ["e8_if_capture", MLP, /Reduce(Mean|Max) node "inner_(mean|max)": reduction over tracked/],
];

const EQUIVALENT: [string, RunOptions][] = [
  ["e3_transposed_shared", MLP],
  ["a0_baseline", HEADS],
  ["a0_baseline", DIMS],
  ["a1_value_ints", HEADS],
  ["a1_value_ints", DIMS],
  ["a2_value_floats_bias", HEADS],
  ["a2_value_floats_bias", DIMS],
  ["a3_shared_concat_target", { ...HEADS, layerRatios: { "b1_": 0 } }],
  ["a5_qk_v_dims_differ", HEADS],
  // Q/K and V heads of different sizes: each loses the head ratio of its own dims.
  ["a5_qk_v_dims_differ", DIMS],
  ["a6_fused_attention", HEADS],
  ["a6_fused_attention", DIMS],
];

for (const [name, options, reason] of REFUSED) {
  Deno.test(`${name}: refused with the reason`, async () => {
    const bytes = await Deno.readFile(new URL(`${name}.onnx`, EDGE));
    await assert.rejects(() => maskingCheck(bytes, { ...options, core }), reason);
  });
}

for (const [name, options] of EQUIVALENT) {
  Deno.test(`${name} ${JSON.stringify(options)}: pruned ≡ masked`, async () => {
    const bytes = await Deno.readFile(new URL(`${name}.onnx`, EDGE));
    const { difference, effect } = await maskingCheck(bytes, { ...options, core });
    assert.ok(effect > 1e-5, "vacuous");
    assert.ok(difference <= 1e-4, `pruned differs from masked by ${difference}`);
  });
}

Deno.test("heads are ranked over all their channels when Q/K and V sizes differ", async () => {
  // Head 0 holds almost all of the V weight: it is the head to keep.
  const bytes = await Deno.readFile(new URL("a5_qk_v_dims_differ.onnx", EDGE));
  const { pruned } = await maskingCheck(bytes, { ...HEADS, core });
  const block = pruned.report.blocks[0] as AttentionBlockReport;
  assert.deepEqual(block.keptHeads, [0]);
});
