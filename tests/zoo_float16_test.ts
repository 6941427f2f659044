/**
 * Float16 models as onnxruntime's float16 converter writes them (`fixtures/zoo/float16_*`, from
 * `scripts/fixtures/zoo/float16.py`): float16 weights and activations, float16 or float32
 * (`keep_io_types`) graph inputs, Casts inserted around the ops kept in float32, and Casts that
 * convert float16 to float16. Every mode prunes them, pruned ≡ masked.
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import type { RunOptions } from "../src/prune.ts";
import { maskingCheck } from "../src/verify.ts";

const ZOO = new URL("./fixtures/zoo/", import.meta.url);
const core = await createCore({ backend: "cpu" });
const MODES: Record<string, RunOptions> = {
  heads: { pruneNumHeads: true, headPruningRatio: 0.5 },
  dims: { pruneHeadDims: true, headPruningRatio: 0.5 },
  mlp: { pruningRatio: 0.5 },
};
// float16 outputs are compared in float32: the same float16 arithmetic on both sides, so the
// tolerance is a float16 rounding step near 1, not float32's.
const TOLERANCE = 1e-3;

for (const family of ["vit", "bert", "llama"]) {
  for (const io of ["", "_keepio"]) {
    const name = `float16_${family}${io}`;
    for (const [mode, options] of Object.entries(MODES)) {
      // Llama rotates pairs of dims inside each head (RoPE): its head dims stay.
      if (family === "llama" && mode === "dims") continue;
      Deno.test(`${name} ${mode}: pruned ≡ masked`, async () => {
        const bytes = await Deno.readFile(new URL(`${name}.onnx`, ZOO));
        const { difference, effect, pruned } = await maskingCheck(bytes, { ...options, core });
        assert.ok(effect > 1e-3, `vacuous: masking changed the output by ${effect}`);
        assert.ok(difference <= TOLERANCE, `pruned differs from masked by ${difference}`);
        assert.ok(pruned.report.params.after < pruned.report.params.before);
      });
    }
  }
}
