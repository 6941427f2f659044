/**
 * The latency table of one transformer block on the user's runtime (NViT, appendix A.3): the
 * block is timed over a grid of (EMB, H, QK, V, MLP) at the user's batch size and token count,
 * the table is cached in a file keyed by runtime, machine and grid, and the latency of any shape
 * inside the grid is read off it by multilinear interpolation. The grid spans every size the
 * search can reach — from each axis's floor to the model's size — so no estimate is ever an
 * extrapolation; an axis the run does not prune holds only the sizes the model's blocks have.
 * Every grid point is the median over several passes over the whole grid (load that comes and
 * goes while the grid is timed moves single timings, not medians of passes), and block shapes
 * timed exactly later (the neighbourhood of the shape the search chose) correct the table's
 * estimates near them.
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import { encodeModel } from "../onnx/model_io.ts";
import {
  type LatencyClock,
  type LatencyRuntime,
  medianRun,
  type TimingRuntime,
  timingRuntime,
} from "./runtime.ts";
import { blockModel, type BlockShape, passThroughModel } from "./block.ts";

export const AXES = ["emb", "heads", "qk", "v", "mlp"] as const;
export type Axis = (typeof AXES)[number];

/** Timed block latencies (ms) on a grid, row-major over the table's free axes
 * ({@link freeAxes}: {@link AXES}, without "v" when V dims are tied to Q/K dims). */
export interface LatencyTable {
  key: string;
  description: Record<string, unknown>;
  batch: number;
  tokens: number;
  /** Grid values per axis, ascending (with `tiedV`, `v` repeats `qk`). */
  axes: Record<Axis, number[]>;
  /** Every timed block has V dims equal to its Q/K dims (the run prunes both together): V is
   * not an axis of its own. */
  tiedV?: boolean;
  ms: number[];
  /** Passes over the grid; each point is the median of its passes. */
  passes?: number;
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
  /** Block shapes timed exactly after the grid, net of the run overhead and on the grid's
   * scale: estimates near them are corrected by the grid's error there. */
  points?: { shape: BlockShape; ms: number }[];
}

/** What the search may reach on each axis: the smallest size an axis can be pruned to (a floor
 * per block); an axis left out is not pruned. */
export interface GridReach {
  emb?: number;
  heads?: number;
  qk?: number;
  v?: number;
  mlp?: number;
  /** Q/K and V dims are pruned together (the same dims from both). */
  tiedDims?: boolean;
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
  /** Grid points per pruned axis (2 to 12); default: as many as `budgetSeconds` allows. */
  levels?: number;
  /** Time to spend profiling, in seconds (default 60). */
  budgetSeconds?: number;
  /** Timed runs per grid point and pass (median; default 7). */
  runs?: number;
  /** Passes over the grid (1 to 9); default: as many as the budget allows after the levels, at
   * most 5. */
  passes?: number;
  /** onnxruntime intra-op threads (default: onnxruntime's choice, all cores). */
  threads?: number;
  /** What to time on (default "cpu": onnxruntime-node's CPU provider). */
  runtime?: LatencyRuntime;
  /** The clock timings are read on (default "wall"; "cpu": the process's CPU time, for one
   * thread on a busy machine). */
  clock?: LatencyClock;
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

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

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
    return await medianRun(session, { x }, runs, 0, runtime.now);
  } finally {
    await session.release?.();
  }
}

/** The axes a table is laid out over. */
export function freeAxes(table: Pick<LatencyTable, "tiedV">): Axis[] {
  return AXES.filter((a) => !(table.tiedV && a === "v"));
}

/**
 * Grid values of every axis: the sizes the blocks have, and on a pruned axis `levels` values
 * evenly spread from its floor to its largest size (on the heads axis every count when there
 * are no more than `levels + 2`).
 */
export function gridAxes(
  blocks: BlockShape[],
  reach: GridReach,
  levels: number,
): { axes: Record<Axis, number[]>; tiedV: boolean } {
  const tiedV = blocks.every((b) => b.qk === b.v) &&
    (reach.tiedDims || (reach.qk === undefined && reach.v === undefined));
  const axes = {} as Record<Axis, number[]>;
  for (const a of AXES) {
    const values = new Set(blocks.map((b) => b[a]));
    const top = Math.max(...values);
    const floor = tiedV && a === "v" ? reach.qk : reach[a];
    if (floor !== undefined) {
      const low = Math.max(1, Math.min(Math.round(floor), top));
      if (a === "heads" && top - low + 1 <= levels + 2) {
        for (let h = low; h <= top; h++) values.add(h);
      } else {
        for (let i = 0; i < levels; i++) {
          values.add(Math.round(low + ((top - low) * i) / Math.max(1, levels - 1)));
        }
      }
    }
    axes[a] = [...values].sort((x, y) => x - y);
  }
  if (tiedV) axes.v = axes.qk;
  return { axes, tiedV };
}

function gridSize(axes: Record<Axis, number[]>, tiedV: boolean): number {
  return freeAxes({ tiedV }).reduce((n, a) => n * axes[a].length, 1);
}

/** The block shape of grid point `i`. */
function pointShape(table: Pick<LatencyTable, "axes" | "tiedV">, i: number): BlockShape {
  const free = freeAxes(table);
  const shape = {} as BlockShape;
  let rest = i;
  for (let k = free.length - 1; k >= 0; k--) {
    const g = table.axes[free[k]];
    shape[free[k]] = g[rest % g.length];
    rest = Math.floor(rest / g.length);
  }
  if (table.tiedV) shape.v = shape.qk;
  return shape;
}

/** What one block shape costs to time on a runtime, and what a run with no block costs. */
interface BlockTimer {
  name: string;
  time: (shape: BlockShape) => Promise<number>;
  overhead: (emb: number) => Promise<number>;
}

async function blockTimer(options: ProfileOptions): Promise<BlockTimer> {
  const batch = options.batch ?? 1, runs = options.runs ?? 7, tokens = options.tokens;
  if (options.timer) {
    return {
      name: options.timer.name,
      time: options.timer.time,
      overhead: () => Promise.resolve(0),
    };
  }
  const rt = await timingRuntime(options.runtime, options.threads, options.clock);
  return {
    name: rt.name + (rt.clock === "cpu" ? ", CPU time" : ""),
    time: (shape) => timeBlock(shape, batch, tokens, runs, rt),
    async overhead(emb) {
      const session = await rt.open(encodeModel(passThroughModel(emb, batch, tokens)));
      try {
        const x = new rt.ort.Tensor("float32", new Float32Array(batch * tokens * emb), [
          batch,
          tokens,
          emb,
        ]);
        return await medianRun(session, { x }, 3 * runs, 0, rt.now);
      } finally {
        await session.release?.();
      }
    },
  };
}

/** Profiles (or reads from the cache) the latency table of the blocks of a model. */
export async function profileBlock(
  blocks: BlockShape | BlockShape[],
  options: ProfileOptions & { reach?: GridReach },
): Promise<LatencyTable> {
  const shapes = Array.isArray(blocks) ? blocks : [blocks];
  const batch = options.batch ?? 1, runs = options.runs ?? 7;
  if (!Number.isInteger(options.tokens) || options.tokens < 1) {
    throw new PruneError("bad-option", `latency profile: tokens must be a positive integer`);
  }
  if (shapes.length === 0) throw new PruneError("bad-option", "latency profile: no block");
  const budget = options.budgetSeconds ?? 60;
  if (!(budget > 0)) {
    throw new PruneError("bad-option", `profile budget must be positive, got ${budget}`);
  }
  const start = performance.now();
  let levels = options.levels;
  if (levels !== undefined && (!Number.isInteger(levels) || levels < 2 || levels > 12)) {
    throw new PruneError("bad-option", `latency grid levels must be 2 to 12, got ${levels}`);
  }
  let passes = options.passes;
  if (passes !== undefined && (!Number.isInteger(passes) || passes < 1 || passes > 9)) {
    throw new PruneError("bad-option", `latency grid passes must be 1 to 9, got ${passes}`);
  }
  const reach = options.reach ?? {};
  const full = Object.fromEntries(
    AXES.map((a) => [a, Math.max(...shapes.map((s) => s[a]))]),
  ) as unknown as BlockShape;
  // The full block is the slowest point: the grid is as fine as the budget allows for it. Timed
  // twice: the first run in a process pays for warming up threads and caches.
  const timer = await blockTimer(options);
  const timeFull = () => timer.time(full);
  const fullMs = Math.min(await timeFull(), await timeFull());
  // A grid point costs about half the full block on average, plus opening its session.
  const perPoint = (fullMs * 0.5 * (runs + 2)) / 1000 + 0.03;
  const pointsAt = (l: number) => {
    const g = gridAxes(shapes, reach, l);
    return gridSize(g.axes, g.tiedV);
  };
  // Two passes at least where the budget allows: a point timed once carries the load of its
  // moment.
  levels ??= [9, 8, 7, 6, 5, 4, 3].find((l) => pointsAt(l) * perPoint * 2 <= budget) ?? 2;
  const { axes, tiedV } = gridAxes(shapes, reach, levels);
  const total = gridSize(axes, tiedV);
  passes ??= Math.max(1, Math.min(5, Math.floor(budget / (total * perPoint))));
  const description = {
    runtime: timer.name,
    machine: `${Deno.build.target}, ${navigator.hardwareConcurrency} threads, ${cpuModel()}`,
    axes,
    tiedV,
    batch,
    tokens: options.tokens,
    runs,
    passes,
    threads: options.threads ?? "default",
    timings: "net of a pass-through run, medians of passes",
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
  const timings: number[][] = Array.from({ length: total }, () => []);
  for (let pass = 0; pass < passes; pass++) {
    // Every other pass backwards: a slow drift of the load weighs on both ends alike.
    for (let k = 0; k < total; k++) {
      const i = pass % 2 ? total - 1 - k : k;
      timings[i].push(await timer.time(pointShape({ axes, tiedV }, i)));
      options.onProgress?.(pass * total + k + 1, passes * total);
    }
  }
  const ms = timings.map(median);
  // Net of what a session run costs with no block in it: inside a model a block does not pay it.
  const overheadMs = [];
  for (const emb of axes.emb) overheadMs.push(await timer.overhead(emb));
  const free = freeAxes({ tiedV });
  const sizes = free.map((a) => axes[a].length);
  const perEmb = total / sizes[0];
  for (let i = 0; i < total; i++) {
    ms[i] = Math.max(0, ms[i] - overheadMs[Math.floor(i / perEmb)]);
  }
  // A block cannot get slower when a dimension shrinks: timing noise that says so is evened out.
  for (let a = 0; a < free.length; a++) {
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
    ...(tiedV ? { tiedV } : {}),
    ms,
    passes,
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

/** Whether a block shape lies inside the measured range of the table on every axis. */
export function inRange(table: LatencyTable, shape: BlockShape): boolean {
  if (table.tiedV && shape.v !== shape.qk) return false;
  return freeAxes(table).every((a) => {
    const g = table.axes[a];
    return shape[a] >= g[0] && shape[a] <= g[g.length - 1];
  });
}

function outside(table: LatencyTable, shape: BlockShape): PruneError {
  const where = table.tiedV && shape.v !== shape.qk
    ? `V dims ${shape.v} ≠ Q/K dims ${shape.qk}: the table ties them`
    : freeAxes(table).filter((a) =>
      shape[a] < table.axes[a][0] || shape[a] > table.axes[a][table.axes[a].length - 1]
    ).map((a) => `${a} ${shape[a]} not in ${table.axes[a][0]}…${table.axes[a].at(-1)}`)
      .join(", ");
  return new PruneError(
    "unsupported-graph",
    `latency: block shape ${JSON.stringify(shape)} lies outside the measured range of the ` +
      `latency table (${where}): build the latency model with the pruning flags and floors of ` +
      `the run`,
  );
}

/** Multilinear interpolation in the grid (no correction by exactly timed points). */
function gridValue(table: LatencyTable, shape: BlockShape): number {
  if (!inRange(table, shape)) throw outside(table, shape);
  const free = freeAxes(table);
  const sizes = free.map((a) => table.axes[a].length);
  // Per axis: the two grid indices around the value and the weight of the upper one.
  const brackets = free.map((a) => {
    const g = table.axes[a], x = shape[a];
    if (g.length === 1) return { lo: 0, hi: 0, t: 0 };
    let hi = g.findIndex((v) => v >= x);
    if (hi <= 0) hi = 1;
    const lo = hi - 1;
    return { lo, hi, t: (x - g[lo]) / (g[hi] - g[lo]) };
  });
  let sum = 0;
  for (let corner = 0; corner < 1 << free.length; corner++) {
    let weight = 1, index = 0;
    for (let a = 0; a < free.length; a++) {
      const upper = (corner >> (free.length - 1 - a)) & 1;
      const { lo, hi, t } = brackets[a];
      weight *= upper ? t : 1 - t;
      index = index * sizes[a] + (upper ? hi : lo);
    }
    if (weight !== 0) sum += weight * table.ms[index];
  }
  return sum;
}

/** Distance between two shapes in grid cells (per axis, the width of the cell around `p`). */
function cellDistance(table: LatencyTable, shape: BlockShape, p: BlockShape): number {
  let d2 = 0;
  for (const a of freeAxes(table)) {
    const g = table.axes[a];
    if (shape[a] === p[a]) continue;
    if (g.length === 1) return Infinity;
    let hi = g.findIndex((v) => v >= p[a]);
    if (hi <= 0) hi = 1;
    d2 += ((shape[a] - p[a]) / (g[hi] - g[hi - 1])) ** 2;
  }
  return Math.sqrt(d2);
}

/**
 * Latency (ms) of a block shape: multilinear interpolation in the grid, corrected near block
 * shapes timed exactly (`exact: false` leaves the correction out) by the grid's error there,
 * weighted by closeness (an exactly timed shape reads its own timing; one grid cell away, no
 * correction). A shape outside the grid is refused: the table never extrapolates.
 */
export function interpolate(
  table: LatencyTable,
  shape: BlockShape,
  options: { exact?: boolean } = {},
): number {
  const base = gridValue(table, shape);
  if (options.exact === false || !table.points?.length) return base;
  let weights = 1, sum = 0;
  for (const p of table.points) {
    const d = cellDistance(table, shape, p.shape);
    if (d >= 1) continue;
    if (d === 0) return p.ms;
    const w = ((1 - d) / d) ** 2;
    weights += w;
    sum += w * (p.ms - gridValue(table, p.shape));
  }
  return base + sum / weights;
}

/**
 * Times block shapes exactly (the neighbourhood of where the search went) and returns the
 * table with them as corrections. Each pass times the full block too: a timing is put on the
 * grid's scale by the full block's ratio in its pass, so that load since the grid was timed is
 * not read as the grid's error.
 */
export async function refineTable(
  table: LatencyTable,
  shapes: BlockShape[],
  options: ProfileOptions,
): Promise<LatencyTable> {
  const key = (s: BlockShape) => AXES.map((a) => s[a]).join("x");
  const seen = new Set<string>();
  const todo = shapes.filter((s) => {
    if (!inRange(table, s) || seen.has(key(s))) return false;
    seen.add(key(s));
    return true;
  });
  if (todo.length === 0) return table;
  const timer = await blockTimer({ ...options, batch: table.batch, tokens: table.tokens });
  const full = pointShape(table, table.ms.length - 1);
  const fullGrid = gridValue(table, full);
  const passes = table.passes ?? 1;
  const overhead = new Map<number, number>();
  const timings = todo.map(() => [] as number[]);
  for (let pass = 0; pass < passes; pass++) {
    const fullNow = await timer.time(full);
    for (const [i, s] of todo.entries()) timings[i].push((await timer.time(s)) / fullNow);
  }
  const fullOverhead = await timer.overhead(full.emb);
  overhead.set(full.emb, fullOverhead);
  // The full block's timing with its overhead, on the grid's scale.
  const scale = fullGrid + fullOverhead;
  const points = new Map((table.points ?? []).map((p) => [key(p.shape), p]));
  for (const [i, s] of todo.entries()) {
    if (!overhead.has(s.emb)) overhead.set(s.emb, await timer.overhead(s.emb));
    const ms = Math.max(0, median(timings[i]) * scale - overhead.get(s.emb)!);
    points.set(key(s), { shape: s, ms });
  }
  return { ...table, points: [...points.values()] };
}
