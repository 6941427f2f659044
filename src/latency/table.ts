/**
 * The latency table of one transformer block on the user's runtime (NViT, appendix A.3): the
 * block is timed over a grid of (EMB, H, QK, V, MLP) at the user's batch size and token count,
 * the table is cached in a file keyed by runtime, machine and block shape, and the latency of
 * any shape is read off it by multilinear interpolation (linear extrapolation below the grid).
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import { encodeModel } from "../onnx/model_io.ts";
import { type LatencyRuntime, medianRun, type TimingRuntime, timingRuntime } from "./runtime.ts";
import { blockModel, type BlockShape, passThroughModel } from "./block.ts";

export const AXES = ["emb", "heads", "qk", "v", "mlp"] as const;

/** Timed block latencies (ms) on a grid, row-major over {@link AXES}. */
export interface LatencyTable {
  key: string;
  description: Record<string, unknown>;
  batch: number;
  tokens: number;
  axes: Record<(typeof AXES)[number], number[]>;
  ms: number[];
  /** Wall time the profiling took (s). */
  seconds: number;
  /** The full block timed before the grid (with the run overhead): what a later run compares
   * with to trust the cache. */
  fullMs?: number;
  /** What a run of a pass-through session took at each embedding width of the grid: taken off
   * every timing in `ms`. */
  overheadMs?: number[];
  /** Read from the cache (after the full block was timed again and agreed with it; the timings
   * rescaled by the ratio). */
  fromCache?: boolean;
  /** Why the table may not match the machine now (load changed while or since profiling). */
  note?: string;
}

/** Timings further apart than this ratio (and than 0.05 ms, below which timer and scheduler
 * noise dominate) say the machine's load is not the same. */
export const LOAD_TOLERANCE = 1.25;

const agree = (a: number, b: number) =>
  Math.max(a / b, b / a) <= LOAD_TOLERANCE || Math.abs(a - b) < 0.05;

/** How to profile. */
export interface ProfileOptions {
  batch?: number;
  tokens: number;
  /** Grid points per axis (2 to 5); default: as many as `budgetSeconds` allows, at most 4. */
  levels?: number;
  /** Time to spend profiling, in seconds (default 60). */
  budgetSeconds?: number;
  /** Timed runs per grid point (median; default 7). */
  runs?: number;
  /** onnxruntime intra-op threads (default: onnxruntime's choice, all cores). */
  threads?: number;
  /** What to time on (default "cpu": onnxruntime-node's CPU provider). */
  runtime?: LatencyRuntime;
  /** Folder of cached tables; null: no cache. Default: the user's cache folder. */
  cacheDir?: string | null;
  onProgress?: (done: number, total: number) => void;
  /** Times one block shape (ms) instead of {@link timeBlock} on `runtime`; `name` (what it
   * runs on) goes into the cache key. */
  timer?: { name: string; time: (shape: BlockShape) => Promise<number> };
}

function defaultCacheDir(): string | null {
  try {
    const env = Deno.env.get("XDG_CACHE_HOME") ??
      (Deno.env.get("HOME") ? `${Deno.env.get("HOME")}/.cache` : undefined);
    return env ? `${env}/prune-vit/latency` : null;
  } catch {
    return null; // no permission to read the environment: no cache
  }
}

function cpuModel(): string {
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    return /model name\s*:\s*(.+)/.exec(info)?.[1]?.trim() ?? "unknown";
  } catch {
    return "unknown";
  }
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Median latency (ms) of one block shape. */
export async function timeBlock(
  shape: BlockShape,
  batch: number,
  tokens: number,
  runs: number,
  runtime: TimingRuntime,
): Promise<number> {
  const session = await runtime.open(encodeModel(blockModel(shape, batch, tokens)));
  try {
    const x = new runtime.ort.Tensor(
      "float32",
      new Float32Array(batch * tokens * shape.emb).fill(0.1),
      [batch, tokens, shape.emb],
    );
    return await medianRun(session, { x }, runs);
  } finally {
    await session.release?.();
  }
}

function grid(full: number, levels: number): number[] {
  const out = new Set<number>();
  for (let i = 1; i <= levels; i++) out.add(Math.max(1, Math.round((full * i) / levels)));
  return [...out].sort((a, b) => a - b);
}

/** Profiles (or reads from the cache) the latency table of blocks up to `full`. */
export async function profileBlock(
  full: BlockShape,
  options: ProfileOptions,
): Promise<LatencyTable> {
  const batch = options.batch ?? 1, runs = options.runs ?? 7;
  if (!Number.isInteger(options.tokens) || options.tokens < 1) {
    throw new PruneError("bad-option", `latency profile: tokens must be a positive integer`);
  }
  const budget = options.budgetSeconds ?? 60;
  if (!(budget > 0)) {
    throw new PruneError("bad-option", `profile budget must be positive, got ${budget}`);
  }
  const start = performance.now();
  let levels = options.levels;
  if (levels !== undefined && (!Number.isInteger(levels) || levels < 2 || levels > 5)) {
    throw new PruneError("bad-option", `latency grid levels must be 2 to 5, got ${levels}`);
  }
  // The full block is the slowest point: the grid is as fine as the budget allows for it. Timed
  // twice: the first run in a process pays for warming up threads and caches.
  const rt = options.timer ? undefined : await timingRuntime(options.runtime, options.threads);
  const time = options.timer?.time ??
    ((shape: BlockShape) => timeBlock(shape, batch, options.tokens, runs, rt!));
  const timeFull = () => time(full);
  const timePassThrough = async (emb: number) => {
    const session = await rt!.open(encodeModel(passThroughModel(emb, batch, options.tokens)));
    try {
      const x = new rt!.ort.Tensor("float32", new Float32Array(batch * options.tokens * emb), [
        batch,
        options.tokens,
        emb,
      ]);
      return await medianRun(session, { x }, runs);
    } finally {
      await session.release?.();
    }
  };
  const fullMs = Math.min(await timeFull(), await timeFull());
  const perPoint = (fullMs * (runs + 2)) / 1000 + 0.02;
  levels ??= [4, 3, 2].find((l) => l ** AXES.length * perPoint * 0.6 <= budget) ?? 2;
  const description = {
    runtime: options.timer?.name ?? rt!.name,
    machine: `${Deno.build.target}, ${navigator.hardwareConcurrency} threads, ${cpuModel()}`,
    block: full,
    batch,
    tokens: options.tokens,
    levels,
    runs,
    threads: options.threads ?? "default",
    timings: "net of a pass-through run",
  };
  const key = await sha256(JSON.stringify(description));
  const dir = options.cacheDir === undefined ? defaultCacheDir() : options.cacheDir;
  const file = dir ? `${dir}/${key}.json` : undefined;
  let stale: string | undefined;
  if (file) {
    let cached: LatencyTable | undefined;
    try {
      cached = JSON.parse(await Deno.readTextFile(file)) as LatencyTable;
    } catch {
      // not cached yet (or unreadable): profile
    }
    if (cached?.key === key && cached.ms?.length) {
      // A table timed under another load misleads every estimate: it is used only if the full
      // block takes now what it took then.
      const cachedFull = cached.fullMs ?? cached.ms[cached.ms.length - 1];
      if (agree(fullMs, cachedFull)) {
        // Within the tolerance the table is rescaled to the speed measured now, so that the
        // blocks and the rest of the model (measured now) add up on the same scale.
        const scale = fullMs / cachedFull;
        return {
          ...cached,
          ms: cached.ms.map((m) => m * scale),
          fullMs,
          fromCache: true,
          seconds: (performance.now() - start) / 1000,
          ...(Math.abs(scale - 1) > 0.05
            ? { note: `cached table rescaled ×${scale.toFixed(2)} to the speed measured now` }
            : {}),
        };
      }
      stale = `the cached table timed the full block at ${cachedFull.toFixed(2)} ms, ` +
        `${fullMs.toFixed(2)} ms now: profiled again`;
    }
  }
  const axes = Object.fromEntries(AXES.map((a) => [a, grid(full[a], levels!)])) as LatencyTable[
    "axes"
  ];
  const sizes = AXES.map((a) => axes[a].length);
  const total = sizes.reduce((a, b) => a * b, 1);
  const ms: number[] = [];
  for (let i = 0; i < total; i++) {
    let rest = i;
    const shape = {} as BlockShape;
    for (let a = AXES.length - 1; a >= 0; a--) {
      shape[AXES[a]] = axes[AXES[a]][rest % sizes[a]];
      rest = Math.floor(rest / sizes[a]);
    }
    ms.push(await time(shape));
    options.onProgress?.(i + 1, total);
  }
  // Net of what a session run costs with no block in it: inside a model a block does not pay it.
  const overheadMs = [];
  for (const emb of axes.emb) overheadMs.push(options.timer ? 0 : await timePassThrough(emb));
  const perEmb = total / sizes[0];
  for (let i = 0; i < total; i++) {
    ms[i] = Math.max(0, ms[i] - overheadMs[Math.floor(i / perEmb)]);
  }
  // A block cannot get slower when a dimension shrinks: timing noise that says so is evened out.
  for (let a = 0; a < AXES.length; a++) {
    const stride = sizes.slice(a + 1).reduce((x, y) => x * y, 1);
    for (let i = 0; i < total; i++) {
      const at = Math.floor(i / stride) % sizes[a];
      if (at > 0) ms[i] = Math.max(ms[i], ms[i - stride]);
    }
  }
  // The full block once more: if it moved, the load changed while the grid was timed.
  const fullEnd = await timeFull();
  const drift = agree(fullEnd, fullMs)
    ? undefined
    : `the full block took ${fullMs.toFixed(2)} ms ` +
      `before profiling and ${fullEnd.toFixed(2)} ms after: the machine's load changed while ` +
      `the table was timed, estimates may be off (not cached)`;
  const note = [stale, drift].filter(Boolean).join("; ") || undefined;
  const table: LatencyTable = {
    key,
    description,
    batch,
    tokens: options.tokens,
    axes,
    ms,
    seconds: (performance.now() - start) / 1000,
    fullMs,
    overheadMs,
    ...(note ? { note } : {}),
  };
  if (file && !drift) {
    try {
      await Deno.mkdir(dir!, { recursive: true });
      const temp = `${file}.${crypto.randomUUID().slice(0, 8)}.tmp`;
      await Deno.writeTextFile(temp, JSON.stringify(table) + "\n");
      await Deno.rename(temp, file);
    } catch {
      // a cache that cannot be written only costs the next run its profiling time
    }
  }
  return table;
}

/** Latency (ms) of a block shape by multilinear interpolation in the table. */
export function interpolate(table: LatencyTable, shape: BlockShape): number {
  const sizes = AXES.map((a) => table.axes[a].length);
  // Per axis: the two grid indices around the value and the weight of the upper one.
  const brackets = AXES.map((a) => {
    const g = table.axes[a], x = shape[a];
    if (g.length === 1) return { lo: 0, hi: 0, t: 0 };
    let hi = g.findIndex((v) => v >= x);
    if (hi <= 0) hi = hi === 0 ? 1 : g.length - 1;
    const lo = hi - 1;
    return { lo, hi, t: (x - g[lo]) / (g[hi] - g[lo]) };
  });
  let sum = 0;
  for (let corner = 0; corner < 1 << AXES.length; corner++) {
    let weight = 1, index = 0;
    for (let a = 0; a < AXES.length; a++) {
      const upper = (corner >> (AXES.length - 1 - a)) & 1;
      const { lo, hi, t } = brackets[a];
      weight *= upper ? t : 1 - t;
      index = index * sizes[a] + (upper ? hi : lo);
    }
    if (weight !== 0) sum += weight * table.ms[index];
  }
  return sum;
}
