/**
 * One onnxruntime run of a model with every intermediate tensor exposed, to learn the concrete
 * shape of each tensor (and the value of small ones, such as shape vectors) at batch size 1.
 *
 * @module
 */
import type { GraphProto } from "../graph/graph.ts";
import { PruneError } from "../errors.ts";
import type { ModelProto } from "../onnx/proto.ts";
import { onnx } from "../onnx/proto.ts";
import { decodeModel, encodeModel } from "../onnx/model_io.ts";
import { loadOrt } from "./ort.ts";

/** Concrete facts about one tensor from a probe run. */
export interface ProbedTensor {
  dims: number[];
  /** Element values, kept only for small tensors (shape vectors, scalars). */
  values?: number[];
}

export interface ProbeOptions {
  /** Concrete sizes for symbolic input dims, by dim name; unnamed/unknown leading dims → 1. */
  dimValues?: Record<string, number>;
  /** Largest tensor whose values are kept. */
  maxValues?: number;
}

const ORT_TYPES: Record<number, string> = {
  1: "float32",
  2: "uint8",
  3: "int8",
  5: "int16",
  6: "int32",
  7: "int64",
  9: "bool",
  10: "float16",
  11: "float64",
};

/** Runs the model once and returns dims (and small values) of every node output and input. */
export async function probeTensors(
  model: ModelProto,
  options: ProbeOptions = {},
): Promise<Map<string, ProbedTensor>> {
  const ort = await loadOrt();
  // Work on a copy: the caller's model must not gain outputs.
  const copy = decodeModel(encodeModel(model), "probe copy");
  const graph = copy.graph as GraphProto;
  const declared = new Set(graph.output.map((o) => o.name));
  const initNames = new Set(graph.initializer.map((t) => t.name));
  for (const node of graph.node) {
    for (const out of node.output ?? []) {
      if (out && !declared.has(out)) {
        graph.output.push(onnx.ValueInfoProto.create({ name: out }));
        declared.add(out);
      }
    }
  }
  const feeds: Record<string, unknown> = {};
  const result = new Map<string, ProbedTensor>();
  for (const input of graph.input) {
    if (initNames.has(input.name as string)) continue;
    const tt = input.type?.tensorType;
    const type = ORT_TYPES[tt?.elemType ?? 0];
    if (!tt || !type) {
      throw new PruneError(
        "unsupported-graph",
        `graph input "${input.name}" is not a tensor of a supported element type`,
      );
    }
    const dims = (tt.shape?.dim ?? []).map((d, axis) => {
      if (d.dimValue != null && Number(d.dimValue) > 0) return Number(d.dimValue);
      const named = d.dimParam ? options.dimValues?.[d.dimParam] : undefined;
      if (named) return named;
      if (axis === 0) return 1;
      throw new PruneError(
        "bad-option",
        `graph input "${input.name}" has a symbolic dim ${axis} ("${
          d.dimParam ?? "?"
        }"): give its size`,
      );
    });
    const size = dims.reduce((a, b) => a * b, 1);
    feeds[input.name as string] = makeFeed(ort, type, size, dims);
    result.set(input.name as string, { dims });
  }
  let session;
  try {
    session = await ort.InferenceSession.create(encodeModel(copy), { logSeverityLevel: 3 });
  } catch (e) {
    throw new PruneError("probe-failed", `onnxruntime cannot load the model: ${message(e)}`);
  }
  try {
    // deno-lint-ignore no-explicit-any
    const outputs: Record<string, any> = await session.run(feeds as any);
    const maxValues = options.maxValues ?? 64;
    for (const [name, t] of Object.entries(outputs)) {
      const dims = [...t.dims].map(Number);
      const entry: ProbedTensor = { dims };
      if (t.size <= maxValues && t.data && typeof t.data !== "string") {
        entry.values = Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
      }
      result.set(name, entry);
    }
  } catch (e) {
    throw new PruneError("probe-failed", `onnxruntime cannot run the model: ${message(e)}`);
  } finally {
    await session.release?.();
  }
  return result;
}

// deno-lint-ignore no-explicit-any
function makeFeed(ort: any, type: string, size: number, dims: number[]) {
  switch (type) {
    case "float32":
      return new ort.Tensor(type, new Float32Array(size).map((_, i) => Math.sin(i) * 0.5), dims);
    case "float64":
      return new ort.Tensor(type, new Float64Array(size).map((_, i) => Math.sin(i) * 0.5), dims);
    case "float16":
      return new ort.Tensor(type, new Uint16Array(size), dims);
    case "int64":
      return new ort.Tensor(type, new BigInt64Array(size), dims);
    case "int32":
      return new ort.Tensor(type, new Int32Array(size), dims);
    case "bool":
      return new ort.Tensor(type, new Uint8Array(size).fill(1), dims);
    case "uint8":
      return new ort.Tensor(type, new Uint8Array(size), dims);
    case "int8":
      return new ort.Tensor(type, new Int8Array(size), dims);
    default:
      return new ort.Tensor(type, new Int16Array(size), dims);
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}
