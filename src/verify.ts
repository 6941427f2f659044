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
import { pruneModel, type PruneResult, type RunOptions } from "./prune.ts";
import { createSession, loadOrt, type OrtTensor, ortToFloat64Array } from "./runtime/ort.ts";
import { FLOAT32_SUFFIX, withFloat32Inputs } from "./runtime/float32_inputs.ts";

/** Outcome of {@link maskingCheck}. */
export interface MaskingCheck {
  /** Largest |pruned − masked| over the first output (float16 outputs compared in float32). */
  difference: number;
  /** Largest |masked − original|: how much the removed channels mattered (0 = vacuous check). */
  effect: number;
  pruned: PruneResult;
}

/**
 * Inputs for every graph input: floats from a sine, token ids cycling below 50, attention masks
 * of ones, token types of zeros; symbolic dims are 2 (batch) and 8 (others). A float16 input is
 * fed as float32 under the name {@link withFloat32Inputs} gives it.
 */
export async function syntheticFeeds(model: ModelProto): Promise<Record<string, OrtTensor>> {
  const ort = await loadOrt();
  const graph = model.graph!;
  const weights = new Set((graph.initializer ?? []).map((t) => t.name));
  const feeds: Record<string, OrtTensor> = {};
  for (const input of (graph.input ?? []).filter((i) => !weights.has(i.name))) {
    const dims = (input.type?.tensorType?.shape?.dim ?? []).map((d, i) =>
      d.dimValue ? Number(d.dimValue) : i === 0 ? 2 : 8
    );
    const n = dims.reduce((a, b) => a * b, 1);
    const half = input.type?.tensorType?.elemType === 10;
    const name = half ? `${input.name}${FLOAT32_SUFFIX}` : input.name!;
    if (input.type?.tensorType?.elemType === 7) {
      const value = (i: number) =>
        /mask/i.test(name) ? 1 : /type/i.test(name) ? 0 : (i * 7) % 50 + 1;
      const ids = BigInt64Array.from({ length: n }, (_, i) => BigInt(value(i)));
      feeds[name] = new ort.Tensor("int64", ids, dims);
    } else {
      const x = new Float32Array(n).map((_, i) => Math.sin(i * 0.37));
      feeds[name] = new ort.Tensor("float32", x, dims);
    }
  }
  return feeds;
}

/** Prunes `bytes` with `options` and compares the result with the masked original. */
export async function maskingCheck(bytes: Uint8Array, options: RunOptions): Promise<MaskingCheck> {
  const feeds = await syntheticFeeds(decodeModel(bytes));
  const run = async (model: Uint8Array) => {
    const session = await createSession(encodeModel(withFloat32Inputs(decodeModel(model))));
    try {
      const out = await session.run(feeds);
      return ortToFloat64Array(out[session.outputNames[0]]);
    } finally {
      await session.release?.();
    }
  };
  const pruned = await pruneModel(decodeModel(bytes), options);
  const masked = await pruneModel(decodeModel(bytes), { ...options, mask: true });
  const [yp, ym, yo] = [
    await run(encodeModel(pruned.model)),
    await run(encodeModel(masked.model)),
    await run(bytes),
  ];
  let difference = 0, effect = 0;
  for (let i = 0; i < yp.length; i++) {
    difference = Math.max(difference, Math.abs(yp[i] - ym[i]));
    effect = Math.max(effect, Math.abs(yo[i] - ym[i]));
  }
  return { difference, effect, pruned };
}
