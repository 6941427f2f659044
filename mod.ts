/**
 * `@prune/vit` — structured pruning of transformer ONNX models (ViT, DeiT, timm / torchvision /
 * HF exports): removes whole attention heads, per-head dims and MLP hidden channels, keeps every
 * coupled tensor and shape constant consistent, and returns a smaller dense ONNX model that any
 * ONNX runtime runs.
 *
 * As a library (bytes in, bytes out — no file system needed):
 * ```ts
 * import { prune } from "./mod.ts";
 * const { bytes, report } = await prune(await Deno.readFile("vit.onnx"), {
 *   pruneNumHeads: true,
 *   headPruningRatio: 0.5,
 *   pruningRatio: 0.25,
 * });
 * console.log(report.params, report.macs);
 * ```
 *
 * As a command: `deno run -A mod.ts model.onnx -o pruned.onnx --prune-num-heads --head-pruning-ratio 0.5`.
 *
 * @module
 */
export { prune, pruneModel } from "./src/prune.ts";
export type { PruneResult, RunOptions } from "./src/prune.ts";
export type { PruneOptions } from "./src/options.ts";
export type {
  AttentionBlockReport,
  BlockReport,
  MlpBlockReport,
  PruneReport,
} from "./src/report.ts";
export { PruneError } from "./src/errors.ts";
export { decodeModel, encodeModel, readModelFile, writeModelFile } from "./src/onnx/model_io.ts";
export { createCore } from "./src/core/mod.ts";
export type { ComputeCore } from "./src/core/mod.ts";
export { countMacs, countParams } from "./src/metrics.ts";

if (import.meta.main) {
  const { main } = await import("./src/cli.ts");
  Deno.exit(await main(Deno.args));
}
