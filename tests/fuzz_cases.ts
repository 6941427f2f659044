/**
 * One fuzz case: a model mutated (truncated, bytes flipped, or one structural change) by a seeded
 * generator, pruned, and the result loaded and run in onnxruntime. Shared by the bounded fuzz
 * test and the long run (scripts/fuzz.ts).
 */
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { toNumber } from "../src/onnx/proto.ts";
import { PruneError } from "../src/errors.ts";
import { pruneModel } from "../src/prune.ts";
import { probeTensors } from "../src/runtime/probe.ts";
import { createCore } from "../src/core/mod.ts";

export type FuzzOutcome =
  | { kind: "pruned"; mutation: string }
  | { kind: "refused"; mutation: string; message: string }
  | { kind: "finding"; mutation: string; message: string };

const core = await createCore({ backend: "cpu" });

function rng(seed: number) {
  let s = (seed >>> 0) || 0x9e3779b9;
  return (n: number) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % Math.max(1, n);
  };
}

/** The mutated bytes of case `n` and what was done to them. */
export function mutate(bytes: Uint8Array, seed: number, n: number): [Uint8Array, string] {
  const r = rng(seed * 1_000_003 + n * 7919 + 1);
  const kind = r(6);
  if (kind === 0) {
    const at = r(bytes.length);
    return [bytes.slice(0, at), `truncated at ${at}`];
  }
  if (kind === 1) {
    const out = bytes.slice();
    const flips = 1 + r(8);
    for (let i = 0; i < flips; i++) out[r(out.length)] ^= 1 << r(8);
    return [out, `${flips} bits flipped`];
  }
  const model = decodeModel(bytes);
  const g = model.graph!;
  const nodes = g.node ?? [], inits = g.initializer ?? [];
  let what: string;
  switch (kind) {
    case 2: {
      const t = inits[r(inits.length)];
      const dims = (t.dims ?? []).map((d) => toNumber(d));
      if (dims.length) dims[r(dims.length)] += [1, -1, 7][r(3)];
      t.dims = dims;
      what = `dims of initializer "${t.name}" → [${dims}]`;
      break;
    }
    case 3: {
      const i = r(nodes.length);
      what = `node "${nodes[i].name}" (${nodes[i].opType}) removed`;
      nodes.splice(i, 1);
      break;
    }
    case 4: {
      const withInts = nodes.filter((x) =>
        (x.attribute ?? []).some((a) => a.type === 2 || a.type === 7)
      );
      const node = withInts[r(withInts.length)];
      const a = (node?.attribute ?? []).find((a) => a.type === 2 || a.type === 7);
      if (!node || !a) return [bytes, "unchanged"];
      const v = [-1, 0, 1, 2, 3, 64][r(6)];
      if (a.type === 2) a.i = v;
      else a.ints = (a.ints ?? []).map((x, i) => (i === 0 ? v : x));
      what = `attribute ${a.name} of "${node.name}" (${node.opType}) → ${v}`;
      break;
    }
    default: {
      const a = nodes[r(nodes.length)], b = nodes[r(nodes.length)];
      const ia = r(a.input?.length ?? 0), ib = r(b.input?.length ?? 0);
      if (!a.input?.length || !b.input?.length) return [bytes, "unchanged"];
      [a.input[ia], b.input[ib]] = [b.input[ib], a.input[ia]];
      what = `inputs swapped between "${a.name}" and "${b.name}"`;
    }
  }
  return [encodeModel(model), what];
}

/** Runs case `n`: mutate, prune, load and run the result (with `dimValues` for symbolic dims). */
export async function fuzzCase(
  bytes: Uint8Array,
  seed: number,
  n: number,
  dimValues?: Record<string, number>,
): Promise<FuzzOutcome> {
  let mutated: Uint8Array, mutation: string;
  try {
    [mutated, mutation] = mutate(bytes, seed, n);
  } catch (e) {
    // A structural change that cannot be encoded is not an input anyone can hand us.
    return { kind: "refused", mutation: "not encodable", message: String(e) };
  }
  let pruned;
  try {
    const model = decodeModel(mutated, "fuzz.onnx");
    pruned = await pruneModel(model, {
      pruneNumHeads: true,
      headPruningRatio: 0.5,
      pruningRatio: 0.5,
      dimValues,
      core,
    });
  } catch (e) {
    if (e instanceof PruneError) return { kind: "refused", mutation, message: e.message };
    return {
      kind: "finding",
      mutation,
      message: `not a PruneError: ${e instanceof Error ? `${e.name}: ${e.message}` : e}`,
    };
  }
  try {
    await probeTensors(pruned.model, { method: "run", dimValues });
  } catch (e) {
    return {
      kind: "finding",
      mutation,
      message: `pruned output rejected by onnxruntime: ${e instanceof Error ? e.message : e}`,
    };
  }
  return { kind: "pruned", mutation };
}
