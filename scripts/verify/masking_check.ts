/**
 * The masking oracle on any ONNX ViT: for heads, head dims and MLP channels (ratio 0.5), the
 * pruned model must compute what the original computes with the same channels zeroed.
 *
 *   deno run -A scripts/verify/masking_check.ts model.onnx [more.onnx …]
 *
 * Prints one line per (model, mode) and exits 1 if any fails. Compares the first output.
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

/**
 * Inputs for every graph input: floats from a sine, token ids cycling below 50, attention
 * masks of ones, token types of zeros. Symbolic dims are 2 (batch) and 8 (others).
 */
function makeFeeds(bytes: Uint8Array) {
  const graph = decodeModel(bytes).graph!;
  const weights = new Set(graph.initializer!.map((t) => t.name));
  const feeds: Record<string, unknown> = {};
  for (const input of graph.input!.filter((i) => !weights.has(i.name))) {
    const dims = input.type!.tensorType!.shape!.dim!.map((d, i) =>
      d.dimValue ? Number(d.dimValue) : i === 0 ? 2 : 8
    );
    const n = dims.reduce((a, b) => a * b, 1);
    const name = input.name!;
    if (input.type!.tensorType!.elemType === 7) {
      const value = (i: number) =>
        /mask/i.test(name) ? 1 : /type/i.test(name) ? 0 : (i * 7) % 50 + 1;
      feeds[name] = new ort.Tensor(
        "int64",
        BigInt64Array.from({ length: n }, (_, i) => BigInt(value(i))),
        dims,
      );
    } else {
      feeds[name] = new ort.Tensor(
        "float32",
        new Float32Array(n).map((_, i) => Math.sin(i * 0.37)),
        dims,
      );
    }
  }
  // deno-lint-ignore no-explicit-any
  return feeds as any;
}
let failures = 0;
for (const file of Deno.args) {
  const bytes = encodeModel(await readModelFile(file));
  const feeds = makeFeeds(bytes);
  const run = async (model: Uint8Array) => {
    const session = await createSession(model);
    const out = await session.run(feeds);
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
