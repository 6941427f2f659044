/**
 * The masking oracle on any ONNX transformer: for heads, head dims and MLP channels (ratio 0.5),
 * the pruned model must compute what the original computes with the same channels zeroed.
 *
 *   deno run -A scripts/verify/masking_check.ts model.onnx [more.onnx …]
 *
 * Prints one line per (model, mode) and exits 1 if any fails. Compares every float output;
 * scripts/verify/zoo_check.ts adds the Q/K≠V and embedding modes and the README table.
 */
import { encodeModel, readModelFile } from "../../src/onnx/model_io.ts";
import type { RunOptions } from "../../src/prune.ts";
import { createCore } from "../../src/core/mod.ts";
import { maskingCheck } from "../../src/verify.ts";

const MODES: Record<string, RunOptions> = {
  heads: { pruneNumHeads: true, headPruningRatio: 0.5 },
  dims: { pruneHeadDims: true, headPruningRatio: 0.5 },
  mlp: { pruningRatio: 0.5 },
};

const core = await createCore({ backend: "cpu" });
let failures = 0;
for (const file of Deno.args) {
  const bytes = encodeModel(await readModelFile(file));
  for (const [mode, options] of Object.entries(MODES)) {
    const name = `${file.split("/").pop()} ${mode}`;
    try {
      const { difference, effect, pruned } = await maskingCheck(bytes, { ...options, core });
      const ok = difference <= 1e-4 && effect > 1e-5;
      if (!ok) failures++;
      const { params, macs } = pruned.report;
      console.log(
        `${ok ? "PASS" : "FAIL"} ${name}: |pruned−masked| ${difference.toExponential(1)}, ` +
          `|masked−original| ${effect.toExponential(1)}, params ${params.before} → ` +
          `${params.after}, MACs ${macs.before} → ${macs.after}`,
      );
    } catch (e) {
      failures++;
      console.log(`FAIL ${name}: ${e instanceof Error ? e.message : e}`);
    }
  }
}
Deno.exit(failures ? 1 : 0);
