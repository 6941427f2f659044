/**
 * The propagation rules, one op family per file. Adding an op is adding an entry here.
 *
 * @module
 */
import type { NodeProto } from "../../graph/graph.ts";
import type { Rule, TraceContext } from "../trace.ts";
import { batchNorm } from "./batch_norm.ts";
import { elementwiseRules } from "./elementwise.ts";
import { fusedAttentionRule } from "./fused_attention.ts";
import { gatherND } from "./gather_nd.ts";
import { layoutRules } from "./layout.ts";
import { linearRule } from "./linear.ts";
import { activationMatMul } from "./matmul.ts";
import { normalizationRules } from "./normalization.ts";
import { resize } from "./resize.ts";
import { sourceRule } from "./sources.ts";
import { quantizedRules, quantizedSource } from "./quantized.ts";

export const RULES = {
  /** Nodes where channels are born; true when the node needs no further rule. */
  source: (ctx: TraceContext, node: NodeProto) =>
    linearRule(ctx, node) || quantizedSource(ctx, node) || sourceRule(ctx, node) ||
    fusedAttentionRule(ctx, node),
  byOp: {
    ...elementwiseRules(),
    ...layoutRules(),
    ...normalizationRules(),
    ...quantizedRules(),
    MatMul: activationMatMul,
    "com.microsoft:FusedMatMul": activationMatMul,
    GatherND: gatherND,
    BatchNormalization: batchNorm,
    Resize: resize,
  } as Record<string, Rule>,
};
