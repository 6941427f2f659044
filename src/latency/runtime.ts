/**
 * The runtime latency is measured on — the one the pruned model will run on: onnxruntime's CPU
 * execution provider (onnxruntime-node, the default), or onnxruntime-web's wasm or WebGPU
 * provider, as a browser would run the model. Each has its own tensors and sessions; the
 * pruning's own onnxruntime work is not affected by the choice.
 *
 * Times are read on the wall clock, or on the process's CPU time (`clock: "cpu"`): on a machine
 * other work keeps busy, a one-thread run waits for the processor between slices of work, and
 * only the CPU time it used says what it would take on the machine alone.
 *
 * @module
 */
import process from "node:process";
import denoJson from "../../deno.json" with { type: "json" };
import { PruneError } from "../errors.ts";
import { encodeModel } from "../onnx/model_io.ts";
import { blockModel } from "./block.ts";
import {
  createSession,
  loadOrt,
  type Ort,
  ortBackendName,
  type OrtSession,
  type OrtTensor,
} from "../runtime/ort.ts";
import { importOnDemand } from "../runtime/on_demand.ts";

export type LatencyRuntime = "cpu" | "wasm" | "webgpu";
export const LATENCY_RUNTIMES: readonly LatencyRuntime[] = ["cpu", "wasm", "webgpu"];
/** What a time is read on: elapsed wall time, or CPU time the process used. */
export type LatencyClock = "wall" | "cpu";
export const LATENCY_CLOCKS: readonly LatencyClock[] = ["wall", "cpu"];

/** A runtime ready to time models: its tensors, its sessions, a name for cache keys, and the
 * clock (ms) runs are timed on. */
export interface TimingRuntime {
  ort: Ort;
  name: string;
  open(model: Uint8Array): Promise<OrtSession>;
  clock: LatencyClock;
  now(): number;
}

/** CPU time (user + system) the process has used, in ms. */
function cpuNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

const web: Partial<Record<"wasm" | "webgpu", Promise<Ort>>> = {};

async function loadWeb(provider: "wasm" | "webgpu"): Promise<Ort> {
  // The default bundle has no WebGPU provider; the webgpu one has both.
  const ort = (await importOnDemand(
    provider === "webgpu" ? "onnxruntime-web/webgpu" : "onnxruntime-web",
  )) as Ort & { env: { wasm: { numThreads?: number } } };
  // Worker threads need permissions Deno does not give onnxruntime-web's loader: one thread.
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = "error";
  // A fresh wasm module runs several times slower until V8 has optimised its hot code: run a
  // block for a second before anything is timed.
  const session = await ort.InferenceSession.create(
    encodeModel(blockModel({ emb: 64, heads: 2, qk: 32, v: 32, mlp: 256 }, 1, 16)),
    { executionProviders: [provider], logSeverityLevel: 3 },
  );
  try {
    const x = new ort.Tensor("float32", new Float32Array(16 * 64).fill(0.1), [1, 16, 64]);
    const start = performance.now();
    while (performance.now() - start < 1000) await session.run({ x });
  } finally {
    await session.release?.();
  }
  return ort;
}

/** Opens `runtime` for timing (`threads`: onnxruntime-node's intra-op threads; the web
 * providers run one thread) on `clock`. CPU time is latency only for a run on one thread, on
 * the processor: refused with more threads (or onnxruntime's default) and on WebGPU. */
export async function timingRuntime(
  runtime: LatencyRuntime = "cpu",
  threads?: number,
  clock: LatencyClock = "wall",
): Promise<TimingRuntime> {
  if (!LATENCY_CLOCKS.includes(clock)) {
    throw new PruneError(
      "bad-option",
      `latency clock must be one of ${LATENCY_CLOCKS.join(", ")}, got "${clock}"`,
    );
  }
  if (clock === "cpu" && (runtime === "webgpu" || (runtime === "cpu" && threads !== 1))) {
    throw new PruneError(
      "bad-option",
      runtime === "webgpu"
        ? "latency clock cpu: WebGPU work is not CPU time (use the wall clock)"
        : "latency clock cpu needs one thread (latency threads 1): CPU time adds up over threads",
    );
  }
  const timing = { clock, now: clock === "cpu" ? cpuNow : () => performance.now() };
  const quiet = { logSeverityLevel: 3 as const, logVerbosityLevel: 0 };
  if (runtime === "cpu") {
    const ort = await loadOrt("latency profiling");
    const options = threads ? { intraOpNumThreads: threads, interOpNumThreads: 1 } : {};
    return {
      ort,
      name: `onnxruntime-${ortBackendName()} ${denoJson.imports["onnxruntime-node"]}`,
      open: (model) => createSession(model, options),
      ...timing,
    };
  }
  if (!LATENCY_RUNTIMES.includes(runtime)) {
    throw new PruneError(
      "bad-option",
      `latency runtime must be one of ${LATENCY_RUNTIMES.join(", ")}, got "${runtime}"`,
    );
  }
  let adapter = "";
  if (runtime === "webgpu") {
    const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
    const found = gpu ? await gpu.requestAdapter().catch(() => null) : null;
    if (!found) {
      throw new PruneError(
        "bad-option",
        "latency runtime webgpu: no WebGPU adapter on this machine (choose cpu or wasm)",
      );
    }
    const info = (found as { info?: { description?: string; isFallbackAdapter?: boolean } })
      .info;
    // A software adapter (llvmpipe) times a CPU emulating a GPU: named, so no one mistakes it.
    adapter = ` on ${info?.description || "a WebGPU adapter"}${
      info?.isFallbackAdapter ? " (software fallback adapter)" : ""
    }`;
  }
  const loading = web[runtime] ??= loadWeb(runtime).catch((e) => {
    delete web[runtime];
    throw new PruneError(
      "ort-unavailable",
      `onnxruntime-web could not be loaded for latency timing (${
        e instanceof Error ? e.message : e
      })`,
    );
  });
  const ort = await loading;
  return {
    ort,
    name: `onnxruntime-web ${runtime}${adapter} ${denoJson.imports["onnxruntime-web"]}`,
    open: (model) =>
      ort.InferenceSession.create(model, { ...quiet, executionProviders: [runtime] }),
    ...timing,
  };
}

/** Median time (ms, on `now`'s clock) of `runs` runs of a session, after warming up: at least
 * 2 runs and `warmMs` of wall time (caches, thread pools and the JIT's optimised code are in
 * place by then). */
export async function medianRun(
  session: OrtSession,
  feeds: Record<string, OrtTensor>,
  runs: number,
  warmMs = 0,
  now: () => number = () => performance.now(),
): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < 2 || (performance.now() - start < warmMs && i < 200); i++) {
    await session.run(feeds);
  }
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = now();
    await session.run(feeds);
    times.push(now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}
