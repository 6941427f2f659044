/**
 * The masking oracle as a function: prune a model, and zero the same channels in the original
 * (`mask: true`), run both in onnxruntime on the same inputs, and report how far apart they are.
 * Where the identity holds (V/output-projection channels, whole heads, Q/K dims with the scale
 * kept, MLP channels whose activation maps 0 to 0) the distance must be at rounding level.
 *
 * @module
 */
import { decodeModel, encodeModel } from "./onnx/model_io.ts";
import type { ModelProto } from "./onnx/proto.ts";
import { f32ToF16Bits } from "./onnx/tensor.ts";
import { withFloat32Io } from "./runtime/float32_io.ts";
import { pruneModel, type PruneResult, type RunOptions } from "./prune.ts";
import { createSession, loadOrt, type OrtTensor, ortToFloat64Array } from "./runtime/ort.ts";

/** How far one output of the pruned model is from the masked original's. */
export interface OutputCheck {
  name: string;
  /** Element type of the output ("float32", "float16", …). */
  type: string;
  /** Largest |pruned − masked|; NaN where the shapes differ (nothing compared). */
  difference: number;
  /** Largest |masked − original|. */
  effect: number;
  /** The pruned output's shape differs from the original's (e.g. a KV cache with fewer heads). */
  reshaped: boolean;
  /** Which of the three models gave NaN or ±Inf in this output. */
  nonFinite: ("pruned" | "masked" | "original")[];
}

/** Outcome of {@link maskingCheck}. */
export interface MaskingCheck {
  /** Largest |pruned − masked| over every floating-point output of unchanged shape. */
  difference: number;
  /** Largest |masked − original| over the same outputs (0 = vacuous check). */
  effect: number;
  /** Per output; outputs that are not floating point are left out. */
  outputs: OutputCheck[];
  /** Graph inputs whose shape the pruning changed: fed zeros in both models. */
  zeroedInputs: string[];
  /** Some compared output is float16 (compare with a looser tolerance). */
  float16: boolean;
  pruned: PruneResult;
}

/** Options of {@link syntheticFeeds} and {@link maskingCheck}'s inputs. */
export interface FeedOptions {
  /** Sizes of symbolic dims by name (e.g. `{ sequence: 16, past_sequence_length: 4 }`). */
  dimValues?: Record<string, number>;
  /** Inputs given as they are (by graph input name) instead of synthetic ones. */
  feeds?: Record<string, OrtTensor>;
  /** onnxruntime session options of {@link maskingCheck}'s runs. Default: basic graph
   * optimisations only, so each op computes its own semantics (the extended level turns QDQ pairs
   * into integer kernels whose float rounding differs with the width of the sum; with none at
   * all, onnxruntime-node 1.30 rejects the float16 converter's inserted Casts). */
  sessionOptions?: SessionOptions;
}

/** onnxruntime session options. */
export type SessionOptions = NonNullable<Parameters<typeof createSession>[1]>;
const ORACLE_SESSION: SessionOptions = { graphOptimizationLevel: "basic" };

const BATCH = 2, SEQUENCE = 8, PAST = 4;
const FLOAT_TYPES = new Set(["float32", "float16", "float64", "bfloat16"]);

/** A dim named like a cache length (past_sequence_length, past_seq_len, past_key_len …). */
function isPastName(name: string): boolean {
  return /past|cache/i.test(name) && !/\+/.test(name);
}

/**
 * Sizes of every symbolic input dim, consistent across inputs: the batch (the first dim, or a
 * dim named like "batch") is 2, a cache length (a name with "past" or "cache") 4, a dim named as
 * a sum ("past_sequence_length + sequence_length", "past + 1") the sum of its parts, and where a
 * cache exists, a total ("total_sequence_length", or a dim only attention masks have, as the
 * dynamo exporter's "s53") the cache length plus the new tokens'; any other 8. `dimValues`
 * overrides by name.
 */
export function syntheticDims(
  model: ModelProto,
  dimValues: Record<string, number> = {},
): Record<string, number> {
  const graph = model.graph!;
  const weights = new Set((graph.initializer ?? []).map((t) => t.name));
  const uses = new Map<string, { axis: number; input: string }[]>();
  for (const input of (graph.input ?? []).filter((i) => !weights.has(i.name))) {
    (input.type?.tensorType?.shape?.dim ?? []).forEach((d, axis) => {
      if (!d.dimParam) return;
      if (!uses.has(d.dimParam)) uses.set(d.dimParam, []);
      uses.get(d.dimParam)!.push({ axis, input: input.name ?? "" });
    });
  }
  const hasPast = [...uses.keys()].some(isPastName);
  const isBatch = (name: string) =>
    /batch/i.test(name) || (uses.get(name)?.[0]?.axis === 0 && !isPastName(name));
  const maskOnly = (name: string) =>
    uses.get(name)!.every((u) => /mask/i.test(u.input) && u.axis > 0);
  const sizes: Record<string, number> = {};
  const sums: string[] = [], totals: string[] = [];
  for (const name of uses.keys()) {
    if (name in dimValues) sizes[name] = dimValues[name];
    else if (/\+/.test(name)) sums.push(name);
    else if (isBatch(name)) sizes[name] = BATCH;
    else if (isPastName(name)) sizes[name] = PAST;
    else if (hasPast && (/total/i.test(name) || maskOnly(name))) totals.push(name);
    else sizes[name] = SEQUENCE;
  }
  const part = (p: string) =>
    /^\d+$/.test(p) ? Number(p) : sizes[p] ?? dimValues[p] ?? (isPastName(p) ? PAST : SEQUENCE);
  for (const name of sums) {
    sizes[name] = name.split("+").map((p) => p.trim()).reduce((sum, p) => sum + part(p), 0);
  }
  // The new tokens: a non-mask input's sequence dim.
  const past = [...uses.keys()].filter(isPastName).map((n) => sizes[n])[0] ?? PAST;
  const fresh =
    [...uses.keys()].filter((n) =>
      n in sizes && !isPastName(n) && !isBatch(n) && !/\+/.test(n) && !maskOnly(n)
    ).map((n) => sizes[n])[0] ?? SEQUENCE;
  for (const name of totals) sizes[name] = past + fresh;
  return sizes;
}

function idValue(name: string, i: number, last: number, offset: number): number {
  if (/mask/i.test(name)) return 1;
  if (/type/i.test(name)) return 0;
  if (/position/i.test(name)) return offset + (i % last);
  return (i * 7) % 50 + 1;
}

/**
 * Inputs for every graph input, of its element type: floats from a sine (float16 and float64
 * too), token ids cycling below 50 (int64 or int32), attention masks of ones (bool: true),
 * token types of zeros, position ids counting from the cache length; symbolic dims as
 * {@link syntheticDims} sizes them. `options.feeds` are used as given.
 */
export async function syntheticFeeds(
  model: ModelProto,
  options: FeedOptions = {},
): Promise<Record<string, OrtTensor>> {
  const ort = await loadOrt();
  const graph = model.graph!;
  const sizes = syntheticDims(model, options.dimValues);
  const past = Object.entries(sizes).find(([n]) => isPastName(n))?.[1] ?? 0;
  const weights = new Set((graph.initializer ?? []).map((t) => t.name));
  const feeds: Record<string, OrtTensor> = {};
  for (const input of (graph.input ?? []).filter((i) => !weights.has(i.name))) {
    const name = input.name!;
    if (options.feeds?.[name]) {
      feeds[name] = options.feeds[name];
      continue;
    }
    const dims = (input.type?.tensorType?.shape?.dim ?? []).map((d, i) =>
      d.dimValue ? Number(d.dimValue) : d.dimParam ? sizes[d.dimParam] : i === 0 ? BATCH : SEQUENCE
    );
    const n = dims.reduce((a, b) => a * b, 1);
    const last = dims.at(-1) ?? 1;
    const sine = (i: number) => Math.sin(i * 0.37);
    switch (input.type?.tensorType?.elemType) {
      case 7: // int64
        feeds[name] = new ort.Tensor(
          "int64",
          BigInt64Array.from({ length: n }, (_, i) => BigInt(idValue(name, i, last, past))),
          dims,
        );
        break;
      case 6: // int32
        feeds[name] = new ort.Tensor(
          "int32",
          Int32Array.from({ length: n }, (_, i) => idValue(name, i, last, past)),
          dims,
        );
        break;
      case 9: // bool
        feeds[name] = new ort.Tensor("bool", new Uint8Array(n).fill(1), dims);
        break;
      case 10: // float16
        feeds[name] = new ort.Tensor(
          "float16",
          Uint16Array.from({ length: n }, (_, i) => f32ToF16Bits(sine(i))),
          dims,
        );
        break;
      case 11: // float64
        feeds[name] = new ort.Tensor(
          "float64",
          Float64Array.from({ length: n }, (_, i) => sine(i)),
          dims,
        );
        break;
      default:
        feeds[name] = new ort.Tensor(
          "float32",
          Float32Array.from({ length: n }, (_, i) => sine(i)),
          dims,
        );
    }
  }
  return feeds;
}

/** A tensor of the same type and dims holding zeros. */
async function zerosLike(t: OrtTensor): Promise<OrtTensor> {
  const ort = await loadOrt();
  const n = t.dims.reduce((a, b) => a * b, 1);
  const data = t.type === "int64"
    ? new BigInt64Array(n)
    : new (Object.getPrototypeOf(t.data as object).constructor as new (n: number) => unknown)(n);
  return new ort.Tensor(t.type as "float32", data as Float32Array, t.dims as number[]);
}

/**
 * Runs a model in onnxruntime on `feeds` and returns every output by name with its element type
 * in the model (float16 inputs and outputs pass as float32 through Casts at the graph's edges).
 */
export async function runOutputs(
  model: ModelProto,
  feeds: Record<string, OrtTensor>,
  sessionOptions: SessionOptions = {},
): Promise<Map<string, { tensor: OrtTensor; type: string }>> {
  const ort = await loadOrt();
  const io = withFloat32Io(model);
  const wrappedFeeds: Record<string, OrtTensor> = {};
  for (const [name, t] of Object.entries(feeds)) {
    const f32 = io.inputs.get(name);
    wrappedFeeds[f32 ?? name] = f32
      ? new ort.Tensor("float32", Float32Array.from(ortToFloat64Array(t)), t.dims as number[])
      : t;
  }
  const session = await createSession(encodeModel(io.model), sessionOptions);
  try {
    const out = await session.run(wrappedFeeds);
    return new Map(session.outputNames.map((n) => {
      const original = io.outputs.get(n);
      return [original ?? n, { tensor: out[n], type: original ? "float16" : out[n].type }];
    }));
  } finally {
    await session.release?.();
  }
}

/** The original model's outputs by input bytes and synthetic feed shapes: every mode of one
 * model runs it on the same inputs. */
const originals = new WeakMap<
  Uint8Array,
  Map<string, Map<string, { tensor: OrtTensor; type: string }>>
>();

async function originalOutputs(
  bytes: Uint8Array,
  feeds: Record<string, OrtTensor>,
  sessionOptions: SessionOptions,
  synthetic: boolean,
): Promise<Map<string, { tensor: OrtTensor; type: string }>> {
  if (!synthetic) return runOutputs(decodeModel(bytes), feeds, sessionOptions);
  // Synthetic values follow from name, type and dims (zeros where a shape changed: "z").
  const key =
    Object.entries(feeds).map(([n, t]) =>
      `${n}:${t.type}:${t.dims.join("x")}:${ortToFloat64Array(t).some((v) => v !== 0) ? "" : "z"}`
    ).join(";") + JSON.stringify(sessionOptions);
  let byFeeds = originals.get(bytes);
  if (!byFeeds) originals.set(bytes, byFeeds = new Map());
  let outputs = byFeeds.get(key);
  if (!outputs) {
    byFeeds.set(key, outputs = await runOutputs(decodeModel(bytes), feeds, sessionOptions));
  }
  return outputs;
}

/**
 * Prunes `bytes` with `options` and compares the result with the masked original on every
 * floating-point output. Inputs whose shape the pruning changes (a KV cache with fewer heads)
 * are fed zeros in both models; outputs whose shape it changes are listed, not compared.
 */
export async function maskingCheck(
  bytes: Uint8Array,
  options: RunOptions,
  feedOptions: FeedOptions = {},
): Promise<MaskingCheck> {
  const pruned = await pruneModel(decodeModel(bytes), options);
  const masked = await pruneModel(decodeModel(bytes), { ...options, mask: true });
  const dimValues = { ...options.dimValues, ...feedOptions.dimValues };
  const feedsOriginal = await syntheticFeeds(decodeModel(bytes), { ...feedOptions, dimValues });
  const feedsPruned = await syntheticFeeds(pruned.model, { ...feedOptions, dimValues });
  const zeroedInputs: string[] = [];
  for (const [name, t] of Object.entries(feedsOriginal)) {
    const p = feedsPruned[name];
    if (!p || p.dims.join() === t.dims.join()) {
      if (p) feedsPruned[name] = t;
      continue;
    }
    zeroedInputs.push(name);
    feedsOriginal[name] = await zerosLike(t);
    feedsPruned[name] = await zerosLike(p);
  }
  const session = feedOptions.sessionOptions ?? ORACLE_SESSION;
  const yp = await runOutputs(pruned.model, feedsPruned, session);
  const ym = await runOutputs(masked.model, feedsOriginal, session);
  const yo = await originalOutputs(bytes, feedsOriginal, session, !feedOptions.feeds);
  const outputs: OutputCheck[] = [];
  let difference = 0, effect = 0;
  for (const [name, { tensor: m, type }] of ym) {
    const p = yp.get(name)?.tensor, o = yo.get(name)?.tensor;
    if (!p || !o || !FLOAT_TYPES.has(type)) continue;
    const reshaped = p.dims.join() !== m.dims.join();
    const [vp, vm, vo] = [ortToFloat64Array(p), ortToFloat64Array(m), ortToFloat64Array(o)];
    let d = reshaped ? NaN : 0, e = 0;
    for (let i = 0; i < vm.length; i++) {
      if (!reshaped) d = Math.max(d, Math.abs(vp[i] - vm[i]));
      e = Math.max(e, Math.abs(vo[i] - vm[i]));
    }
    const nonFinite = ([["pruned", vp], ["masked", vm], ["original", vo]] as const)
      .filter(([, v]) => v.some((x) => !Number.isFinite(x))).map(([which]) => which);
    outputs.push({ name, type, difference: d, effect: e, reshaped, nonFinite });
    if (reshaped) continue;
    difference = Math.max(difference, d);
    effect = Math.max(effect, e);
  }
  const float16 = outputs.some((o) => o.type === "float16" && !o.reshaped);
  return { difference, effect, outputs, zeroedInputs, float16, pruned };
}
