/**
 * The masking oracle on any ONNX ViT: for heads, head dims and MLP channels (ratio 0.5), the
 * pruned model must compute what the original computes with the same channels zeroed.
 *
 *   deno run -A scripts/verify/masking_check.ts model.onnx [more.onnx …]
 *
 * Prints one line per (model, mode) and exits 1 if any fails. Float32 inputs; symbolic dims are
 * set to 2.
 */
import { decodeModel, encodeModel, readModelFile } from "../../src/onnx/model_io.ts";
import { pruneModel, type RunOptions } from "../../src/prune.ts";
import { createCore } from "../../src/core/mod.ts";
import { createSession, loadOrt } from "../../src/runtime/ort.ts";

const MODES: Record<string, RunOptions> = {
  heads: { pruneNumHeads: true, headPruningRatio: 0.5 },
  dims: { pruneHeadDims: true, headPruningRatio: 0.5 },
  mlp: { pruningRatio: 0.5 },
};

const core = await createCore({ backend: "cpu" });
const ort = await loadOrt();
let failures = 0;
for (const file of Deno.args) {
  const bytes = encodeModel(await readModelFile(file));
  const input = decodeModel(bytes).graph!.input![0];
  const dims = input.type!.tensorType!.shape!.dim!.map((d) => d.dimValue ? Number(d.dimValue) : 2);
  const x = new Float32Array(dims.reduce((a, b) => a * b, 1)).map((_, i) => Math.sin(i * 0.37));
  const run = async (model: Uint8Array) => {
    const session = await createSession(model);
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", x, dims) });
    return out[session.outputNames[0]].data as Float32Array;
  };
  const original = await run(bytes);
  for (const [mode, options] of Object.entries(MODES)) {
    const name = `${file.split("/").pop()} ${mode}`;
    try {
      const pruned = await pruneModel(decodeModel(bytes), { ...options, core });
      const masked = await pruneModel(decodeModel(bytes), { ...options, core, mask: true });
      const yp = await run(encodeModel(pruned.model)), ym = await run(encodeModel(masked.model));
      let diff = 0, moved = 0;
      for (let i = 0; i < yp.length; i++) {
        diff = Math.max(diff, Math.abs(yp[i] - ym[i]));
        moved = Math.max(moved, Math.abs(original[i] - ym[i]));
      }
      const ok = diff <= 1e-4 && moved > 1e-5;
      if (!ok) failures++;
      const { params, macs } = pruned.report;
      console.log(
        `${ok ? "PASS" : "FAIL"} ${name}: |pruned−masked| ${diff.toExponential(1)}, ` +
          `|masked−original| ${
            moved.toExponential(1)
          }, params ${params.before} → ${params.after}, ` +
          `MACs ${macs.before} → ${macs.after}`,
      );
    } catch (e) {
      failures++;
      console.log(`FAIL ${name}: ${e instanceof Error ? e.message : e}`);
    }
  }
}
Deno.exit(failures ? 1 : 0);
