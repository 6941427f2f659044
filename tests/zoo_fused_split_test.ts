/**
 * Fused projections split along the channel axis (q | k | v by Split or Slice, gate | up chunked),
 * from real exports in tests/fixtures/zoo (scripts/fixtures/zoo/fused_split*.py): every mode the
 * model allows prunes, and the pruned model computes what the original computes with the same
 * channels zeroed.
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import { maskingCheck } from "../src/verify.ts";
import type { RunOptions } from "../src/prune.ts";
import { PruneError } from "../src/errors.ts";

const core = await createCore({ backend: "cpu" });
const dir = new URL("./fixtures/zoo/", import.meta.url);
const read = (name: string) => Deno.readFile(new URL(`${name}.onnx`, dir));

const MODES: Record<string, RunOptions> = {
  heads: { pruneNumHeads: true, headPruningRatio: 0.5 },
  dims: { pruneHeadDims: true, headPruningRatio: 0.5 },
  "qk≠v": { pruneHeadDims: true, qkPruningRatio: 0.25, vPruningRatio: 0.5 },
  mlp: { pruningRatio: 0.5 },
  "kv-groups": { pruneNumHeads: true, headPruningRatio: 0.5, gqaPolicy: "kv-groups" },
};

/** Export → the modes that must prune exactly; the others must be refused with a reason. */
const EXPECTED: Record<string, string[]> = {
  gpt2: ["heads", "dims", "qk≠v", "mlp"],
  gpt2_dynamo: ["heads", "dims", "qk≠v", "mlp"],
  clip_text: ["heads", "dims", "qk≠v", "mlp"],
  clip_text_torch1: ["heads", "dims", "qk≠v", "mlp"],
  torchvision_vit_torch1: ["heads", "dims", "qk≠v", "mlp"],
  // RoPE rotates pairs of Q/K dims inside each head: V dims may still go.
  phi3: ["heads", "qk≠v", "mlp"],
  phi3_dynamo: ["heads", "qk≠v", "mlp"],
  phi3_gqa: ["heads", "qk≠v", "mlp", "kv-groups"],
  phi3_gqa_dynamo: ["heads", "qk≠v", "mlp", "kv-groups"],
  eva02_dynamo: ["heads", "qk≠v", "mlp"],
};

for (const [name, exact] of Object.entries(EXPECTED)) {
  for (const [mode, options] of Object.entries(MODES)) {
    if (mode === "kv-groups" && !name.includes("gqa")) continue;
    Deno.test(`${name} ${mode}: ${exact.includes(mode) ? "pruned ≡ masked" : "refused"}`, async () => {
      const bytes = await read(name);
      if (!exact.includes(mode)) {
        await assert.rejects(maskingCheck(bytes, { ...options, core }), PruneError);
        return;
      }
      const { difference, effect, pruned } = await maskingCheck(bytes, { ...options, core });
      assert.ok(effect > 1e-4, `masking changed nothing (${effect}): the check would be vacuous`);
      assert.ok(difference <= 1e-4, `pruned differs from masked by ${difference}`);
      assert.ok(pruned.report.params.after < pruned.report.params.before);
    });
  }
}

Deno.test("a Split into equal parts gets explicit sizes once q/k and v dims differ", async () => {
  const bytes = await read("gpt2_dynamo");
  const { pruned } = await maskingCheck(bytes, { ...MODES["qk≠v"], core });
  const splits = pruned.model.graph!.node!.filter((n) => n.opType === "Split");
  assert.ok(splits.length > 0);
  for (const split of splits) {
    assert.ok(!split.attribute?.some((a) => a.name === "num_outputs"));
    assert.equal(split.input!.length, 2);
  }
});
