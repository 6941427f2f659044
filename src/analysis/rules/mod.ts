/**
 * The propagation rules, one op family per file. Adding an op is adding an entry here.
 *
 * @module
 */
import type { Rule } from "../trace.ts";
import { elementwiseRules } from "./elementwise.ts";
import { layoutRules } from "./layout.ts";
import { linearRule } from "./linear.ts";
import { activationMatMul } from "./matmul.ts";
import { normalizationRules } from "./normalization.ts";

export const RULES = {
  linear: linearRule,
  byOp: {
    ...elementwiseRules(),
    ...layoutRules(),
    ...normalizationRules(),
    MatMul: activationMatMul,
  } as Record<string, Rule>,
};
