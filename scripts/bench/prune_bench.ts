/**
 * End-to-end pruning time of the fixture models (shapes, analysis, importance, rewrite and the
 * onnxruntime load check of the result), CPU core. Run: `deno bench -A scripts/bench/prune_bench.ts`.
 */
import { prune } from "../../src/prune.ts";
import { createCore } from "../../src/core/mod.ts";

const core = await createCore({ backend: "cpu" });
const fixtures = new URL("../../tests/fixtures/", import.meta.url);
for (const name of ["timm_vit", "hf_vit", "torchvision_vit", "fmnist_vit"]) {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(new URL(`${name}.onnx`, fixtures));
  } catch {
    continue;
  }
  Deno.bench(`prune ${name}: half the heads + half the MLP`, { group: "prune" }, async () => {
    await prune(bytes, { pruneNumHeads: true, headPruningRatio: 0.5, pruningRatio: 0.5, core });
  });
}
