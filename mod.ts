/**
 * `@prune/vit` — structured pruning of transformer ONNX models (ViT, DeiT, timm / torchvision /
 * HF exports): removes whole attention heads, per-head dims and MLP hidden channels, keeps every
 * coupled tensor and shape constant consistent, and returns a smaller dense ONNX model that any
 * ONNX runtime runs.
 *
 * As a library — bytes in, bytes out; a magnitude prune needs no permission at all (calibration,
 * evaluation and run checks load onnxruntime, which needs `--allow-ffi` or `--allow-read`):
 * ```ts
 * import { prune } from "@prune/vit";
 * const { bytes, report } = await prune(await Deno.readFile("vit.onnx"), {
 *   pruneNumHeads: true,
 *   headPruningRatio: 0.5,
 *   pruningRatio: 0.25,
 * });
 * console.log(report.params, report.macs);
 * ```
 *
 * As a command (`-R` reads the model, `-W` writes the output):
 * `deno run -R -W jsr:@prune/vit model.onnx -o pruned.onnx --prune-num-heads --head-pruning-ratio 0.5`.
 *
 * @module
 */
export { prune, pruneModel } from "./src/prune.ts";
export type { Batches, GroupRef, PruneResult, RunOptions } from "./src/prune.ts";
export type { PruneOptions } from "./src/options.ts";
export type {
  AttentionBlockReport,
  BlockReport,
  GroupReport,
  MlpBlockReport,
  PruneReport,
} from "./src/report.ts";
export type { Compensation } from "./src/compensate.ts";
export type { Evaluation, Fidelity } from "./src/evaluate.ts";
export type { Metric, UnitKind } from "./src/allocate.ts";
export type { ApplyStats } from "./src/apply.ts";
export type { SpeedupCheck, TargetReport, TargetStep } from "./src/target.ts";
export type { InterfaceChange } from "./src/analysis/interfaces.ts";
export type { OrtTensor } from "./src/runtime/ort.ts";
export { PruneError } from "./src/errors.ts";
export { decodeModel, encodeModel, readModelFile, writeModelFile } from "./src/onnx/model_io.ts";
export type { WriteModelOptions, WriteResult } from "./src/onnx/model_io.ts";
export type { ModelProto } from "./src/onnx/proto.ts";
export { createCore, Float32Bytes } from "./src/core/mod.ts";
export type {
  Backend,
  ComputeCore,
  CoreOptions,
  Reduce,
  RefitProblem,
  RefitResult,
  ScoreData,
} from "./src/core/mod.ts";
export type { DistillOptions, DistillReport } from "./src/distill/mod.ts";
export type {
  SearchCandidate,
  SearchCandidateReport,
  SearchOptions,
  SearchReport,
} from "./src/search/mod.ts";
export type { CandidateFidelity } from "./src/search/score.ts";
export type { LossKind } from "./src/distill/loss.ts";
export { countMacs, countParams, tensorShapes } from "./src/metrics.ts";
export type { MacOptions, ShapeMap, ShapeOptions } from "./src/metrics.ts";
export type { ProbeOptions } from "./src/runtime/probe.ts";

if (import.meta.main) {
  const { main } = await import("./src/cli.ts");
  Deno.exit(await main(Deno.args));
}
