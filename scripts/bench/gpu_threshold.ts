/**
 * Compute core, GPU path vs CPU path by tensor size, side by side in one run: per-channel L2
 * scores (float32 and float16) and the gather that keeps half the channels, on weights from
 * 256 × 256 up to the 7B Llama's largest (the 32000 × 4096 embedding, 14336 × 4096 MLP), each
 * case the median of `--runs` calls after one warm-up. Prints a table, the smallest size at which
 * the GPU path is faster for each operation (the dispatch threshold), and with --json the rows.
 *
 *   XDG_RUNTIME_DIR=/tmp deno run -A scripts/bench/gpu_threshold.ts [--runs 7] [--json OUT]
 *
 * Needs a WebGPU adapter (any: a software one is reported as such).
 */
import { parseArgs } from "node:util";
import { type ComputeCore, createCore } from "../../src/core/mod.ts";

const args = parseArgs({
  options: { runs: { type: "string", default: "7" }, json: { type: "string" } },
}).values;
const runs = Number(args.runs);

const cpu = await createCore({ backend: "cpu" });
const gpu = await createCore({ backend: "gpu" });
const adapter = await (navigator as unknown as {
  gpu: { requestAdapter(): Promise<{ info?: Record<string, unknown> } | null> };
}).gpu.requestAdapter();
const info = adapter?.info ?? {};
const fields = ["vendor", "architecture", "device", "description", "isFallbackAdapter"];
console.log("adapter:", JSON.stringify(Object.fromEntries(fields.map((f) => [f, info[f]]))));

const SHAPES: [number, number][] = [
  [256, 256],
  [768, 768],
  [768, 3072],
  [1024, 4096],
  [2048, 5632],
  [4096, 4096],
  [4096, 14336],
  [32000, 4096],
];

async function median(fn: () => Promise<unknown>): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

interface Row {
  op: string;
  dims: [number, number];
  mib: number;
  cpuMs: number;
  gpuMs: number;
}
const rows: Row[] = [];
for (const dims of SHAPES) {
  const n = dims[0] * dims[1];
  const f32 = new Float32Array(n).map((_, i) => Math.sin(i * 0.001));
  const f16 = new Uint16Array(n).map((_, i) => 0x3000 + (i % 0x0c00));
  const keep = Uint32Array.from({ length: dims[1] / 2 }, (_, i) => i * 2);
  const cases: [string, number, (core: ComputeCore) => Promise<unknown>][] = [
    ["scores f32", 4, (c) => c.channelLpScores(f32, dims, 1, 2)],
    ["scores f16", 2, (c) => c.channelLpScores(f16, dims, 1, 2)],
    ["gather f32", 4, (c) => c.gatherAxis(new Uint8Array(f32.buffer), dims, 4, 1, keep)],
    ["gather f16", 2, (c) => c.gatherAxis(new Uint8Array(f16.buffer), dims, 2, 1, keep)],
  ];
  for (const [op, size, run] of cases) {
    // Side by side: CPU then GPU on the same tensor, in one process.
    const cpuMs = await median(() => run(cpu));
    const gpuMs = await median(() => run(gpu));
    rows.push({ op, dims, mib: (n * size) / 2 ** 20, cpuMs, gpuMs });
    console.log(
      `${op.padEnd(10)} ${`${dims[0]}×${dims[1]}`.padStart(11)} ${
        ((n * size) / 2 ** 20).toFixed(1).padStart(7)
      } MiB  cpu ${cpuMs.toFixed(2).padStart(8)} ms  gpu ${gpuMs.toFixed(2).padStart(8)} ms  ${
        cpuMs > gpuMs ? `gpu ×${(cpuMs / gpuMs).toFixed(2)}` : `cpu ×${(gpuMs / cpuMs).toFixed(2)}`
      }`,
    );
  }
}
for (const op of new Set(rows.map((r) => r.op))) {
  const mine = rows.filter((r) => r.op === op);
  // The threshold: the smallest size from which the GPU path wins at every larger size.
  let from: Row | undefined;
  for (let i = mine.length - 1; i >= 0 && mine[i].gpuMs < mine[i].cpuMs; i--) from = mine[i];
  console.log(
    `${op}: ${
      from
        ? `GPU faster from ${from.mib.toFixed(1)} MiB (${from.dims.join("×")})`
        : "CPU faster at every size"
    }`,
  );
}
if (args.json) await Deno.writeTextFile(args.json, JSON.stringify(rows, null, 2) + "\n");
gpu.dispose();
