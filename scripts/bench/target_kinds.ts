/**
 * Where a target's budget goes, and what it costs in accuracy: the trained Fashion-MNIST ViT of
 * `tests/fixtures/` pruned to a share of its MACs (default 50%) with each choice of the kinds
 * that take part, magnitude scores, no finetuning; accuracy on the 744 embedded test images the
 * calibration rows do not use (images 256…999). Prints one line per variant: accuracy, MACs, and
 * heads × head dim / MLP width of every block, then the notes and warnings about the allocation.
 *
 *   deno run -A scripts/bench/target_kinds.ts [--macs 0.5]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { pruneToTarget } from "../../src/target.ts";
import { decodeModel, encodeModel } from "../../src/onnx/model_io.ts";
import { createSession, loadOrt } from "../../src/runtime/ort.ts";
import type { RunOptions } from "../../src/prune.ts";

const { values } = parseArgs({ options: { macs: { type: "string", default: "0.5" } } });
const FIXTURES = new URL("../../tests/fixtures/", import.meta.url);
const bytes = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
const images = await Deno.readFile(new URL("fmnist_test_1000.bin", FIXTURES));
const n = 1000, size = 28 * 28, held = 256, mean = 0.286, std = 0.353;
const pixels = images.subarray(16, 16 + n * size), labels = images.subarray(16 + n * size);
const ort = await loadOrt();
const batch = (start: number, count: number) => {
  const data = new Float32Array(count * size);
  for (let i = 0; i < data.length; i++) data[i] = (pixels[start * size + i] / 255 - mean) / std;
  return new ort.Tensor("float32", data, [count, 1, 28, 28]);
};

async function accuracy(model: Uint8Array): Promise<number> {
  const session = await createSession(model);
  const out = await session.run({ [session.inputNames[0]]: batch(held, n - held) });
  const logits = out[session.outputNames[0]].data as Float32Array;
  let right = 0;
  for (let r = 0; r < n - held; r++) {
    let best = 0;
    for (let c = 1; c < 10; c++) if (logits[r * 10 + c] > logits[r * 10 + best]) best = c;
    if (best === labels[held + r]) right++;
  }
  await session.release();
  return right / (n - held);
}

const variants: [string, RunOptions][] = [
  ["MLP channels only (--head-pruning-ratio 0)", { headPruningRatio: 0 }],
  ["default (head dims and MLP channels)", {}],
  ["head dims, isomorphic", { allocation: "isomorphic" }],
  ["heads (--prune-num-heads) and MLP channels", { pruneNumHeads: true }],
];
console.log(`original: ${(100 * await accuracy(bytes)).toFixed(1)}%`);
for (const [name, options] of variants) {
  const r = await pruneToTarget(decodeModel(bytes), { macs: Number(values.macs) }, {
    backend: "cpu",
    ...options,
  });
  const blocks = r.report.blocks.flatMap((b) =>
    b.kind === "attention"
      ? [`${b.heads.after}×${b.headDim.after}`]
      : b.kind === "mlp"
      ? [`${b.channels.after}`]
      : []
  );
  console.log(
    `${name}: ${(100 * await accuracy(encodeModel(r.model))).toFixed(1)}%, MACs ` +
      `${(r.report.macs.after / 1e6).toFixed(2)} M; ${blocks.join(" ")}`,
  );
  for (const note of r.report.notes) console.log(`  note: ${note}`);
  for (const warning of r.target.warnings ?? []) console.log(`  warning: ${warning}`);
}
