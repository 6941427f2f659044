/**
 * Our in-memory pruning step, the counterpart of Torch-Pruning's DependencyGraph + prune in the
 * scale benchmark: the model is read first (not timed), then `pruneModel` is timed — shapes,
 * trace, groups, scores, plan, slicing and the onnxruntime load check of the result, with the
 * CLI's benchmark options (half the heads, half the MLP). Writing is not timed. Weights read
 * lazily from external data are cut while written, so for those models slicing is outside.
 *
 *   deno run -A scripts/bench/prune_step.ts MODEL.onnx   → {"prune_s": …, "params": …}
 */
import { readModelFile } from "../../src/onnx/model_io.ts";
import { pruneModel } from "../../src/prune.ts";

const [input] = Deno.args;
if (!input) {
  console.error("usage: deno run -A scripts/bench/prune_step.ts MODEL.onnx");
  Deno.exit(2);
}
const model = await readModelFile(input);
const start = performance.now();
const { report } = await pruneModel(model, {
  pruneNumHeads: true,
  headPruningRatio: 0.5,
  pruningRatio: 0.5,
});
const seconds = (performance.now() - start) / 1000;
console.log(JSON.stringify({ prune_s: seconds, params: report.params.after }));
