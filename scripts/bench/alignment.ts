/**
 * Head-aligned against unaligned head-dim pruning at the same parameter count, timed in
 * onnxruntime on one transformer block (DeiT-Small's shape by default). Aligned: every head keeps
 * d dims. Unaligned: the same total spread over heads of different sizes (from d·(1−s) to
 * d·(1+s)), which a dense runtime runs either padded to the largest head or one head at a time
 * (own projections and attention per head, outputs concatenated). Every model is timed in
 * interleaved rounds (this machine is noisy) and the medians compared.
 *
 *   deno run -A scripts/bench/alignment.ts [--emb 384] [--heads 6] [--dim 64] [--mlp 1536]
 *     [--tokens 197] [--batch 1] [--keep 0.5] [--threads N] [--runtime cpu|wasm|webgpu]
 *     [--rounds 5] [--json OUT]
 */
import { parseArgs } from "node:util";
import { blockModel, type BlockShape, type UnalignedHeads } from "../../src/latency/block.ts";
import { encodeModel } from "../../src/onnx/model_io.ts";
import { type LatencyRuntime, timingRuntime } from "../../src/latency/runtime.ts";

const args = parseArgs({
  options: {
    emb: { type: "string", default: "384" },
    heads: { type: "string", default: "6" },
    dim: { type: "string", default: "64" },
    mlp: { type: "string", default: "1536" },
    tokens: { type: "string", default: "197" },
    batch: { type: "string", default: "1" },
    keep: { type: "string", default: "0.5" },
    threads: { type: "string" },
    runtime: { type: "string", default: "cpu" },
    rounds: { type: "string", default: "5" },
    json: { type: "string" },
  },
}).values;
const [emb, heads, dim, mlp, tokens, batch, rounds] = [
  args.emb,
  args.heads,
  args.dim,
  args.mlp,
  args.tokens,
  args.batch,
  args.rounds,
].map(Number);
const threads = args.threads ? Number(args.threads) : undefined;
const d = Math.round(dim * Number(args.keep));

/** Head sizes evenly spread from d(1−s) to d(1+s), summing to heads × d. */
function spread(s: number): number[] {
  const sizes = Array.from(
    { length: heads },
    (_, h) => Math.round(d * (1 - s + (2 * s * h) / Math.max(1, heads - 1))),
  );
  sizes[heads - 1] += heads * d - sizes.reduce((a, b) => a + b, 0);
  return sizes;
}

type Variant = {
  name: string;
  shape: BlockShape | (Omit<BlockShape, "heads" | "qk" | "v"> & UnalignedHeads);
};
const variants: Variant[] = [
  { name: `aligned: ${heads} heads × ${d} dims`, shape: { emb, heads, qk: d, v: d, mlp } },
  {
    name: `aligned, run one head at a time`,
    shape: { emb, headDims: spread(0), mlp },
  },
];
for (const s of [0.25, 0.5]) {
  const sizes = spread(s);
  const widest = Math.max(...sizes);
  variants.push(
    {
      name: `unaligned ${sizes.join("/")}, padded to ${widest}`,
      shape: { emb, heads, qk: widest, v: widest, mlp },
    },
    {
      name: `unaligned ${sizes.join("/")}, one head at a time`,
      shape: { emb, headDims: sizes, mlp },
    },
  );
}

const rt = await timingRuntime(args.runtime as LatencyRuntime, threads);
const x = new rt.ort.Tensor("float32", new Float32Array(batch * tokens * emb).fill(0.1), [
  batch,
  tokens,
  emb,
]);
const sessions = await Promise.all(
  variants.map((v) => rt.open(encodeModel(blockModel(v.shape, batch, tokens)))),
);
const times = variants.map(() => [] as number[]);
for (let r = 0; r < rounds; r++) {
  for (const [i, session] of sessions.entries()) {
    for (let w = 0; w < 2; w++) await session.run({ x });
    const runs: number[] = [];
    for (let k = 0; k < 15; k++) {
      const t = performance.now();
      await session.run({ x });
      runs.push(performance.now() - t);
    }
    times[i].push(runs.sort((a, b) => a - b)[7]);
  }
}
const median = (t: number[]) => t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
const ms = times.map(median);
console.log(
  `one block: emb ${emb}, MLP ${mlp}, ${tokens} tokens, batch ${batch}, ` +
    `${rt.name}, threads ${threads ?? "default"}; median of ${rounds} rounds × 15 runs\n`,
);
console.log("variant".padEnd(58) + "ms      vs aligned");
variants.forEach((v, i) => {
  console.log(
    `${v.name.padEnd(58)}${ms[i].toFixed(3).padStart(7)}  ×${(ms[i] / ms[0]).toFixed(2)}`,
  );
});
if (args.json) {
  const rows = variants.map((v, i) => ({ variant: v.name, ms: ms[i], ratio: ms[i] / ms[0] }));
  await Deno.writeTextFile(
    args.json,
    JSON.stringify({ emb, heads, d, mlp, tokens, batch, rows }, null, 2) + "\n",
  );
}
for (const s of sessions) await s.release?.();
