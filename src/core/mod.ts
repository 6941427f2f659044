/**
 * Compute core of `@prune/vit`: per-channel Lp scores, score reductions, stable selection, a
 * bit-exact gather along one axis, and the dense linear algebra of the data-aware path (Gram
 * matrices, the ridge least squares of the reweight compensation, APMA's dissimilarity). The math is Rust compiled to WebAssembly
 * (`crates/prune_core`, built into `./wasm/` by `deno task build:wasm`); it runs either as WebGPU
 * compute shaders (`navigator.gpu`) or on the CPU inside wasm. This module only marshals.
 *
 * @example
 * ```ts
 * import { createCore } from "@prune/vit";
 *
 * const core = await createCore(); // "gpu" when navigator.gpu gives an adapter, else "cpu"
 * const weight = new Float32Array(768 * 3072); // an MLP weight [in, out]
 * const scores = await core.channelLpScores(weight, [768, 3072], 1, 2); // 3072 scores
 * const keep = await core.selectKeep(scores, 768); // drop the 768 weakest channels
 * const pruned = await core.gatherAxis(new Uint8Array(weight.buffer), [768, 3072], 4, 1, keep);
 * core.dispose();
 * ```
 *
 * On the GPU backend, `aggregate` and `groupScores` (O(length) on short score vectors) run in wasm;
 * the other ops run compute shaders, chunked to the device's maxStorageBufferBindingSize, with
 * the per-call CPU fallbacks listed in `crates/prune_core/src/gpu.rs`. Each call copies its one
 * tensor into wasm memory (no model-wide buffers).
 *
 * @module
 */

// @ts-types="./wasm/prune_core.d.ts"
import * as wasm from "./wasm/prune_core.js";
import { RefitPool } from "./refit_pool.ts";

/** Where the core computes: WebGPU compute shaders, or the CPU inside wasm. */
export type Backend = "gpu" | "cpu";
/** How score vectors are combined. */
export type Reduce = "sum" | "mean" | "max";

/**
 * Little-endian float32 values as raw bytes at any alignment (a weight's bytes as stored in the
 * model): scored without first copying them into an aligned Float32Array.
 */
export class Float32Bytes {
  /** Wraps the bytes (no copy); their length must be a multiple of 4. */
  constructor(readonly bytes: Uint8Array) {
    if (bytes.length % 4 !== 0) {
      throw new RangeError(`${bytes.length} bytes are not whole float32 values`);
    }
  }
  /** Length in bytes. */
  get byteLength(): number {
    return this.bytes.length;
  }
  /** The values in an aligned Float32Array (a view when the bytes are aligned, else a copy). */
  values(): Float32Array {
    const b = this.bytes.byteOffset % 4 === 0 ? this.bytes : this.bytes.slice();
    return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
  }
}

/** Weights to score: float32 values, float32 bytes, or float16 bit patterns in a Uint16Array. */
export type ScoreData = Float32Array | Float32Bytes | Uint16Array;

/**
 * The compute core: channel scores, their reductions, selection and gathers, on the GPU or the
 * CPU (both give the same answers).
 *
 * @example
 * ```ts
 * import { createCore } from "@prune/vit";
 * const core = await createCore({ backend: "cpu" });
 * const scores = await core.channelLpScores(new Float32Array([1, 2, 3, 4]), [2, 2], 0, 2);
 * console.log(scores); // Float32Array [5, 25]
 * core.dispose();
 * ```
 */
export interface ComputeCore {
  /** The backend in use. */
  readonly backend: Backend;
  /** Per-channel Σ|w|^p over every axis except `axis` (no root taken). Returns dims[axis] scores. */
  channelLpScores(
    data: ScoreData,
    dims: number[],
    axis: number,
    p: 1 | 2,
  ): Promise<Float32Array>;
  /** Elementwise combination of equally long score vectors. */
  aggregate(scores: Float32Array[], reduce: Reduce): Promise<Float32Array>;
  /** Reduce contiguous equal-size groups of a score vector (e.g. channels → heads): length must divide evenly. */
  groupScores(scores: Float32Array, groupCount: number, reduce: Reduce): Promise<Float32Array>;
  /** Indices to keep: drops the `drop` lowest scores (stable: among equal scores the lower index is dropped first, like a stable ascending argsort whose first `drop` entries are pruned), returns the kept indices ascending. */
  selectKeep(scores: Float32Array, drop: number): Promise<Uint32Array>;
  /** Same within each of `groupCount` contiguous equal groups: drop `dropPerGroup` lowest per group; returns global kept indices ascending. */
  selectKeepPerGroup(
    scores: Float32Array,
    groupCount: number,
    dropPerGroup: number,
  ): Promise<Uint32Array>;
  /** Gather along `axis` of a row-major tensor of raw little-endian elements of `elementSize` bytes (bit-exact for any dtype). indices may be in any order/repeat. Returns the new raw bytes. */
  gatherAxis(
    bytes: Uint8Array,
    dims: number[],
    elementSize: number,
    axis: number,
    indices: Uint32Array,
  ): Promise<Uint8Array>;
  /** The reweight compensation's ridge least squares for one layer (see {@link RefitProblem});
   * up to `threads` of them run at once, each on a worker of its own where workers can start. */
  ridgeRefit(problem: RefitProblem): Promise<RefitResult>;
  /** Keeps the refit workers between bursts of refits until the returned function is called
   * (idle, they stop, so that an idle core never keeps the process alive). */
  holdRefitWorkers?(): () => void;
  /** Ridge refits that run at once. */
  readonly threads: number;
  /** Release GPU resources (no-op on CPU). */
  dispose(): void;
}

/**
 * One layer y = x·W + b to refit on its kept inputs: [W'; b'] minimising
 * E‖x·W + b − x_K·W' − b'‖² + λ‖W'‖², λ = ridge × the mean of diag(E[x_K x_Kᵀ]), the intercept
 * not penalised; without a bias, b' = b. Solved by a blocked Cholesky factorisation in the core.
 */
export interface RefitProblem {
  /** Σ xᵀx over `count` positions, cin × cin, row-major. */
  gram: Float32Array;
  /** Positions summed into the Gram matrix. */
  count: number;
  /** W, cin × cout, row-major. */
  weight: Float32Array;
  /** Input channels of W. */
  cin: number;
  /** Output channels of W. */
  cout: number;
  /** Input channels kept, ascending. */
  kept: Uint32Array;
  /** Ridge, relative to the mean input energy of the kept channels. */
  ridge: number;
  /** With a bias: its values and the input's mean over the Gram's positions. */
  bias?: { values: Float32Array; mean: Float64Array };
  /** Bits of the solve: 32 (default: as accurate here, see bench/RESULTS.md) or 64. */
  precision?: 32 | 64;
  /** The caller gives up `gram`'s buffer: a worker takes it over instead of a copy. */
  giveGram?: boolean;
  /** The removed inputs' contribution, given instead of read from `gram` and `weight` (which
   * then hold the kept inputs only, every one kept): `cross` = Σ x_Kᵀ·(x_R·W_R) over the
   * positions (kept × cout), and with a bias `mean` = μ_Rᵀ·W_R (cout). */
  removed?: { cross: Float32Array; mean?: Float64Array };
}

/** The refitted layer of a {@link RefitProblem}. */
export interface RefitResult {
  /** W' (kept × cout). */
  weight: Float32Array;
  /** b', when the problem has a bias. */
  bias?: Float32Array;
}

/** Options of {@link createCore}. */
export interface CoreOptions {
  /** "auto" (default), "gpu" or "cpu"; see {@link createCore}. */
  backend?: "auto" | "gpu" | "cpu";
  /** Caps the bytes per GPU storage binding below the device limit (tests use it to force chunking). */
  gpuChunkBytes?: number;
  /** With a GPU: send every call to it ("all", the default of backend "gpu"), or each call to the
   * path measured faster at its size ("by-size", the default of "auto"). */
  gpuCalls?: "all" | "by-size";
  /** Ridge refits run at once on workers (default: the CPU's cores, at most 4; 1: no workers). */
  threads?: number;
  /**
   * With "auto": the largest tensor the core will be given, in bytes. Below the sizes where the GPU
   * path pays off no adapter is asked for — starting a driver costs time and memory for nothing.
   */
  largestBytes?: number;
}

/**
 * "auto" (default) picks the GPU when navigator.gpu gives a hardware adapter — then each call goes
 * to the path measured faster at its size (large scores on the GPU, the rest on the CPU) — else
 * the CPU path (also, without asking for an adapter, when `largestBytes` is below every size the
 * GPU is given)
 * (a software adapter such as Mesa's lavapipe emulates the GPU on the CPU and is slower than the
 * wasm CPU path: see bench/RESULTS.md); "gpu" uses any adapter and throws a clear error when
 * there is none.
 */
export async function createCore(options: CoreOptions = {}): Promise<ComputeCore> {
  const backend = options.backend ?? "auto";
  const threads = options.threads === undefined
    ? Math.max(1, Math.min(4, globalThis.navigator?.hardwareConcurrency ?? 1))
    : options.threads;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new RangeError(`threads must be a positive integer, got ${threads}`);
  }
  if (backend === "cpu") return new CpuCore(threads);
  const gpuFrom = Math.min(GPU_FROM_BYTES.scoresF16, GPU_FROM_BYTES.scoresF32);
  if (backend === "auto" && options.largestBytes !== undefined && options.largestBytes < gpuFrom) {
    return new CpuCore(threads);
  }
  if (backend !== "auto" && backend !== "gpu") {
    throw new TypeError(`backend must be "auto", "gpu" or "cpu", got ${JSON.stringify(backend)}`);
  }
  quietVulkanLoader();
  const gpu = (globalThis.navigator as { gpu?: GpuLike } | undefined)?.gpu;
  try {
    if (!gpu) throw new Error("navigator.gpu is not defined");
    if (backend === "auto" && await onlySoftwareAdapter(gpu)) return new CpuCore(threads);
    const chunk = options.gpuChunkBytes === undefined
      ? undefined
      : u32("gpuChunkBytes", options.gpuChunkBytes);
    const bySize = (options.gpuCalls ?? (backend === "auto" ? "by-size" : "all")) === "by-size";
    return new GpuCore(await wasm.GpuCore.create(chunk), bySize, threads);
  } catch (error) {
    if (backend === "gpu") {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`GPU backend requested but WebGPU is unavailable: ${reason}`, {
        cause: error,
      });
    }
    return new CpuCore(threads);
  }
}

/**
 * Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set" on stderr when
 * WebGPU starts without it; it is harmless but reads like a failure in every report. Set only
 * when unset, and only where the environment may be written.
 */
function quietVulkanLoader(): void {
  try {
    // Query first: reading without the permission would prompt in an interactive terminal.
    const env = { name: "env", variable: "XDG_RUNTIME_DIR" } as const;
    if (Deno.permissions.querySync(env).state !== "granted") return;
    if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
  } catch {
    // Not Deno, or no permission API: leave the environment alone.
  }
}

interface GpuLike {
  requestAdapter(): Promise<
    { isFallbackAdapter?: boolean; info?: { isFallbackAdapter?: boolean } } | null
  >;
}

/** True when the only adapter is a software fallback (or there is none). */
async function onlySoftwareAdapter(gpu: GpuLike): Promise<boolean> {
  const adapter = await gpu.requestAdapter();
  return !adapter || !!(adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter);
}

/** Compute dispatches a GPU core has submitted so far (undefined for a CPU core). Diagnostics and
 * tests use it to tell GPU work from the per-call CPU fallbacks. */
export function gpuDispatchCount(core: ComputeCore): number | undefined {
  return core instanceof GpuCore ? core.dispatches : undefined;
}

function u32(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(`${name} must be an integer in [0, 2^32), got ${value}`);
  }
  return value;
}

function dimsArray(dims: number[]): Uint32Array {
  return Uint32Array.from(dims, (d, i) => u32(`dims[${i}]`, d));
}

function concat(scores: Float32Array[]): Float32Array {
  if (scores.length === 0) throw new RangeError("aggregate needs at least one score vector");
  const len = scores[0].length;
  const flat = new Float32Array(len * scores.length);
  scores.forEach((s, k) => {
    if (s.length !== len) {
      throw new RangeError(`score vector ${k} has length ${s.length}, expected ${len}`);
    }
    flat.set(s, k * len);
  });
  return flat;
}

/**
 * {@link ComputeCore.gatherAxis} on the CPU, synchronously: for slices produced when their bytes
 * are asked for (while the output is written), outside any core's lifetime.
 *
 * @example const kept = gatherAxisNow(bytes, [768, 3072], 4, 1, Uint32Array.of(0, 5, 9));
 */
export function gatherAxisNow(
  bytes: Uint8Array,
  dims: number[],
  elementSize: number,
  axis: number,
  indices: Uint32Array,
): Uint8Array {
  return wasm.cpu_gather_axis(
    bytes,
    dimsArray(dims),
    u32("elementSize", elementSize),
    u32("axis", axis),
    indices,
  );
}

/** {@link ComputeCore.ridgeRefit} on the CPU, synchronously. */
export function ridgeRefitNow(problem: RefitProblem): RefitResult {
  const { cin, cout, kept } = problem;
  const out = wasm.cpu_ridge_refit(
    problem.gram,
    u32("cin", cin),
    problem.count,
    problem.weight,
    u32("cout", cout),
    kept,
    problem.ridge,
    problem.bias?.values,
    problem.bias?.mean,
    problem.precision ?? 32,
    problem.removed?.cross,
    problem.removed?.mean,
  );
  const rows = kept.length * cout;
  return problem.bias
    ? { weight: out.subarray(0, rows), bias: out.subarray(rows) }
    : { weight: out };
}

/**
 * Xᵀ·X of `rows` rows of `channels` values (row-major), in the core.
 *
 * @example const g = gramNow(Float32Array.of(1, 2, 3, 4), 2, 2); // [10, 14, 14, 20]
 */
export function gramNow(x: Float32Array, rows: number, channels: number): Float32Array {
  return wasm.cpu_gram(x, u32("rows", rows), u32("channels", channels));
}

/**
 * APMA's similarity weight from a Gram matrix (channels × channels): per channel,
 * 1 − max |cos(xᵢ, xⱼ)| over the other channels with the same `heads` label (all others when
 * absent), in the core.
 *
 * @example const d = dissimilarityNow(Float32Array.of(1, 1, 1, 1), 2); // [0, 0]: duplicates
 */
export function dissimilarityNow(
  gram: Float32Array,
  channels: number,
  heads?: Int32Array,
): Float64Array {
  return wasm.cpu_dissimilarity(gram, u32("channels", channels), heads);
}

class CpuCore implements ComputeCore {
  readonly backend: Backend = "cpu";
  readonly #refits: RefitPool;

  constructor(readonly threads = 1) {
    this.#refits = new RefitPool(threads, ridgeRefitNow);
  }

  channelLpScores(
    data: ScoreData,
    dims: number[],
    axis: number,
    p: 1 | 2,
  ): Promise<Float32Array> {
    return Promise.resolve().then(() =>
      data instanceof Uint16Array
        ? wasm.cpu_channel_lp_scores_f16(data, dimsArray(dims), u32("axis", axis), p)
        : data instanceof Float32Bytes
        ? wasm.cpu_channel_lp_scores_f32_bytes(data.bytes, dimsArray(dims), u32("axis", axis), p)
        : wasm.cpu_channel_lp_scores_f32(data, dimsArray(dims), u32("axis", axis), p)
    );
  }

  aggregate(scores: Float32Array[], reduce: Reduce): Promise<Float32Array> {
    return Promise.resolve().then(() => wasm.cpu_aggregate(concat(scores), scores.length, reduce));
  }

  groupScores(scores: Float32Array, groupCount: number, reduce: Reduce): Promise<Float32Array> {
    return Promise.resolve().then(() =>
      wasm.cpu_group_scores(scores, u32("groupCount", groupCount), reduce)
    );
  }

  selectKeep(scores: Float32Array, drop: number): Promise<Uint32Array> {
    return this.selectKeepPerGroup(scores, 1, drop);
  }

  selectKeepPerGroup(
    scores: Float32Array,
    groupCount: number,
    dropPerGroup: number,
  ): Promise<Uint32Array> {
    return Promise.resolve().then(() =>
      wasm.cpu_select_keep_per_group(
        scores,
        u32("groupCount", groupCount),
        u32("dropPerGroup", dropPerGroup),
      )
    );
  }

  gatherAxis(
    bytes: Uint8Array,
    dims: number[],
    elementSize: number,
    axis: number,
    indices: Uint32Array,
  ): Promise<Uint8Array> {
    return Promise.resolve().then(() => gatherAxisNow(bytes, dims, elementSize, axis, indices));
  }

  ridgeRefit(problem: RefitProblem): Promise<RefitResult> {
    return this.#refits.solve(problem, problem.giveGram);
  }

  holdRefitWorkers(): () => void {
    return this.#refits.hold();
  }

  dispose(): void {}
}

/**
 * Where "auto" sends a call to the GPU, measured on an H100 against this wasm CPU path
 * (`scripts/bench/gpu_threshold.ts`, bench/RESULTS.md): scores are faster on the GPU from about
 * 22 MiB of float16 and 44 MiB of float32 weights (×2–3 and ×1.1–1.3 at 7B sizes); below, the
 * ~12 ms of upload, dispatch and readback per call outweigh the work. The gather was slower on
 * the GPU at every size for float32 (×1.3–2.5: it moves the tensor twice) and runs on the CPU for
 * 2-byte elements anyway; selection works on short score vectors. `backend: "gpu"` sends every
 * call to the GPU.
 */
const GPU_FROM_BYTES = { scoresF16: 16 * 2 ** 20, scoresF32: 40 * 2 ** 20 } as const;

/** GPU ops run one call at a time (WebGPU error scopes are per device); aggregate and groupScores
 * are inherited from the wasm CPU path. */
class GpuCore extends CpuCore {
  override readonly backend: Backend = "gpu";
  #gpu: wasm.GpuCore | null;
  #queue: Promise<unknown> = Promise.resolve();
  #lastDispatches = 0;
  /** Send each call to the faster path by size (createCore's "auto"), else always to the GPU. */
  readonly #bySize: boolean;

  constructor(gpu: wasm.GpuCore, bySize = false, threads = 1) {
    super(threads);
    this.#gpu = gpu;
    this.#bySize = bySize;
  }

  get dispatches(): number {
    return this.#gpu?.dispatches ?? this.#lastDispatches;
  }

  #serial<T>(run: (gpu: wasm.GpuCore) => Promise<T>): Promise<T> {
    const result = this.#queue.then(() => {
      if (this.#gpu === null) throw new Error("ComputeCore used after dispose()");
      return run(this.#gpu);
    });
    this.#queue = result.catch(() => {});
    return result;
  }

  override channelLpScores(
    data: ScoreData,
    dims: number[],
    axis: number,
    p: 1 | 2,
  ): Promise<Float32Array> {
    const from = data instanceof Uint16Array ? GPU_FROM_BYTES.scoresF16 : GPU_FROM_BYTES.scoresF32;
    if (this.#bySize && data.byteLength < from) return super.channelLpScores(data, dims, axis, p);
    return this.#serial((gpu) =>
      data instanceof Uint16Array
        ? gpu.channel_lp_scores_f16(data, dimsArray(dims), u32("axis", axis), p)
        : gpu.channel_lp_scores_f32(
          data instanceof Float32Bytes ? data.values() : data,
          dimsArray(dims),
          u32("axis", axis),
          p,
        )
    );
  }

  override selectKeepPerGroup(
    scores: Float32Array,
    groupCount: number,
    dropPerGroup: number,
  ): Promise<Uint32Array> {
    if (this.#bySize) return super.selectKeepPerGroup(scores, groupCount, dropPerGroup);
    return this.#serial((gpu) =>
      gpu.select_keep_per_group(
        scores,
        u32("groupCount", groupCount),
        u32("dropPerGroup", dropPerGroup),
      )
    );
  }

  override gatherAxis(
    bytes: Uint8Array,
    dims: number[],
    elementSize: number,
    axis: number,
    indices: Uint32Array,
  ): Promise<Uint8Array> {
    if (this.#bySize) return super.gatherAxis(bytes, dims, elementSize, axis, indices);
    return this.#serial((gpu) =>
      gpu.gather_axis(
        bytes,
        dimsArray(dims),
        u32("elementSize", elementSize),
        u32("axis", axis),
        indices,
      )
    );
  }

  override dispose(): void {
    const gpu = this.#gpu;
    this.#gpu = null;
    if (gpu) {
      this.#lastDispatches = gpu.dispatches;
      this.#queue.then(() => {
        gpu.destroy();
        gpu.free();
      });
    }
  }
}
