/**
 * Compute core, GPU path vs CPU path, side by side in one run, on ViT-B-sized tensors
 * (an MLP weight 768×3072 in f32): per-channel L2 scores and the gather that slices half the
 * channels. Run: `XDG_RUNTIME_DIR=/tmp deno bench -A scripts/bench/core_bench.ts`.
 * Without a WebGPU adapter only the CPU cases run.
 */
import { createCore } from "../../src/core/mod.ts";

const cpu = await createCore({ backend: "cpu" });
// Any adapter, software ones included ("auto" would pick the CPU on those).
const gpu = await createCore({ backend: "gpu" }).catch(() => cpu);
const hasGpu = gpu.backend === "gpu";

const dims = [768, 3072];
const weight = new Float32Array(dims[0] * dims[1]).map((_, i) => Math.sin(i * 0.001));
const bytes = new Uint8Array(weight.buffer);
const keep = Uint32Array.from({ length: 1536 }, (_, i) => i * 2);

Deno.bench(
  "channelLpScores 768×3072 axis 1 — cpu",
  { group: "scores", baseline: true },
  async () => {
    await cpu.channelLpScores(weight, dims, 1, 2);
  },
);
Deno.bench(
  "channelLpScores 768×3072 axis 1 — gpu",
  { group: "scores", ignore: !hasGpu },
  async () => {
    await gpu.channelLpScores(weight, dims, 1, 2);
  },
);
Deno.bench("gatherAxis 768×3072 keep 1536 — cpu", { group: "gather", baseline: true }, async () => {
  await cpu.gatherAxis(bytes, dims, 4, 1, keep);
});
Deno.bench(
  "gatherAxis 768×3072 keep 1536 — gpu",
  { group: "gather", ignore: !hasGpu },
  async () => {
    await gpu.gatherAxis(bytes, dims, 4, 1, keep);
  },
);
