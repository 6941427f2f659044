/**
 * One onnxruntime run of a model with every intermediate tensor exposed, to learn the concrete
 * shape of each tensor (and the value of small ones, such as shape vectors) at batch size 1.
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import { onnx, toNumber } from "../onnx/proto.ts";
import type { ModelProto } from "../onnx/proto.ts";
import { encodeModel } from "../onnx/model_io.ts";
import { createSession, loadOrt, ORT_ELEMENT_TYPES, type OrtTensor } from "./ort.ts";
import { staticShapes, StaticShapeUnknown } from "./static_shapes.ts";
import { chooseDims, describeDims, type DimChoice } from "./symbolic_dims.ts";
import { hasBranches, inlineBranches } from "./branches.ts";

/** Concrete facts about one tensor from a probe run. */
export interface ProbedTensor {
  dims: number[];
  /** Element values, kept only for small tensors (shape vectors, scalars). */
  values?: number[];
}

function numel(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** How the probe makes its inputs. */
export interface ProbeOptions {
  /** Full shape of a graph input, by input name (wins over everything else). */
  inputShapes?: Record<string, number[]>;
  /** Size of a symbolic dim, by its `dim_param` name (e.g. `{ seq: 197 }`). */
  dimValues?: Record<string, number>;
  /** Size used for a symbolic / unknown first (batch) dim. Default 1. */
  batch?: number;
  /** Size used for any other symbolic dim without a value in `dimValues`. Default 8. */
  otherDims?: number;
  /** Largest tensor whose values are kept (default 64 elements). */
  maxValues?: number;
  /** "static": from the graph alone (fails on ops without a rule); "run": one onnxruntime run;
   * "auto" (default): static where it can, else the run. */
  method?: "auto" | "static" | "run";
}

/** Deterministic small values in [-0.5, 0.5). */
function smallRandom(n: number): Float64Array {
  const out = new Float64Array(n);
  let s = 0x2545f491;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 4294967296) - 0.5;
  }
  return out;
}

type OrtApi = Awaited<ReturnType<typeof loadOrt>>;

function makeFeed(ort: OrtApi, type: string, dims: number[]): OrtTensor {
  const n = numel(dims);
  switch (type) {
    case "float32":
      return new ort.Tensor(type, Float32Array.from(smallRandom(n)), dims);
    case "float64":
      return new ort.Tensor(type, smallRandom(n), dims);
    case "float16":
      return new ort.Tensor(type, new Uint16Array(n), dims); // zeros
    case "int64":
      return new ort.Tensor(type, new BigInt64Array(n), dims);
    case "uint64":
      return new ort.Tensor(type, new BigUint64Array(n), dims);
    case "int32":
      return new ort.Tensor(type, new Int32Array(n), dims);
    case "uint32":
      return new ort.Tensor(type, new Uint32Array(n), dims);
    case "int16":
      return new ort.Tensor(type, new Int16Array(n), dims);
    case "uint16":
      return new ort.Tensor(type, new Uint16Array(n), dims);
    case "int8":
      return new ort.Tensor(type, new Int8Array(n), dims);
    case "bool":
    case "uint8":
      return new ort.Tensor(type, new Uint8Array(n), dims);
    case "string":
      return new ort.Tensor(type, new Array<string>(n).fill("0"), dims);
  }
  throw new Error(`unreachable: ${type}`);
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** Concrete shape of a graph input, resolving symbolic dims as documented on tensorShapes. */
function inputShape(
  name: string,
  dims: { dimValue?: unknown; dimParam?: string | null }[] | undefined,
  options: ProbeOptions,
  chosen?: Map<string, DimChoice>,
): number[] {
  const given = options.inputShapes?.[name];
  if (given) return given;
  if (!dims) {
    throw new PruneError(
      "unknown-input-shape",
      `graph input "${name}" has no declared shape: give it (inputShapes: { "${name}": [...] })`,
    );
  }
  return dims.map((d, axis) => {
    const v = d.dimValue == null ? 0 : toNumber(d.dimValue as number);
    if (v > 0) return v;
    const param = d.dimParam ?? "";
    const named = param ? options.dimValues?.[param] ?? chosen?.get(param)?.size : undefined;
    if (named !== undefined) return named;
    if (axis === 0) return options.batch ?? 1;
    // Other symbolic dims (a sequence length): a small size that any position table allows.
    return options.otherDims ?? 8;
  });
}

/**
 * Runs the model once in onnxruntime with every node output added as a graph output, and
 * returns the dims (and, for small tensors such as shape vectors, the values) of every graph
 * input and node output. Inputs are synthesised from the graph input types: a symbolic or
 * unknown first dim becomes `options.batch` (1); any other symbolic dim takes its size from
 * `options.dimValues` (by name) or `options.inputShapes`, else `options.otherDims` (8). Float
 * inputs get small deterministic values, integer and bool inputs zeros (attention masks ones). A plain number array
 * is taken as the shape of the first graph input. Throws PruneError("probe-failed") when
 * onnxruntime cannot run the model.
 */
export async function probeTensors(
  model: ModelProto,
  options: ProbeOptions | number[] = {},
): Promise<Map<string, ProbedTensor>> {
  const graph = model.graph;
  if (!graph) throw new PruneError("not-onnx", "model has no graph");
  const initNames = new Set((graph.initializer ?? []).map((t) => t.name ?? ""));
  const realInputs = (graph.input ?? []).filter((i) => !initNames.has(i.name ?? ""));
  if (Array.isArray(options)) {
    const first = realInputs[0]?.name;
    options = first ? { inputShapes: { [first]: options } } : {};
  }
  const opts = options;
  if (hasBranches(model)) {
    // Every branch's tensors: one probe with every If on its then-branch, one on its else-branch.
    // A branch that cannot run on these inputs leaves its tensors without shapes (the trace then
    // stops at them); when neither can, the model is probed as it is.
    const merged = new Map<string, ProbedTensor>();
    for (const which of [0, 1] as const) {
      const shapes = await probeTensors(inlineBranches(model, which), opts).catch(() => undefined);
      for (const [name, t] of shapes ?? []) if (!merged.has(name)) merged.set(name, t);
    }
    if (merged.size) return merged;
  }
  const result = new Map<string, ProbedTensor>();
  // Symbolic dims get sizes that agree with each other (total sequence = past + new).
  const chosen = chooseDims(
    realInputs.map((i) => i.type?.tensorType?.shape?.dim ?? []),
    opts.dimValues ?? {},
    opts.batch ?? 1,
    opts.otherDims ?? 8,
  );

  // What the run is for, named in the error when Deno's permissions keep onnxruntime out.
  let purpose = "the run check (verifyRun, --verify-run)";
  if (opts.method !== "run") {
    const dims = new Map<string, number[]>();
    for (const input of realInputs) {
      const tt = input.type?.tensorType;
      dims.set(
        input.name ?? "",
        inputShape(input.name ?? "", tt?.shape ? (tt.shape.dim ?? []) : undefined, opts, chosen),
      );
    }
    try {
      return staticShapes(model, dims, opts.maxValues ?? 64);
    } catch (e) {
      if (!(e instanceof StaticShapeUnknown) || opts.method === "static") throw e;
      purpose = `working out tensor shapes past ${e.message} (no shape rule; one run instead)`;
    }
  }

  const ort = await loadOrt(purpose);
  const feeds: Record<string, OrtTensor> = {};
  const castInputs: {
    f32: string;
    name: string;
    node: ReturnType<typeof onnx.NodeProto.create>;
  }[] = [];
  for (const input of realInputs) {
    const name = input.name ?? "";
    const tt = input.type?.tensorType;
    // A string input is rare but valid (a Cast reads it): fed "0"s.
    const type = tt?.elemType === 8 ? "string" : ORT_ELEMENT_TYPES[tt?.elemType ?? 0];
    if (!tt || !type) {
      throw new PruneError(
        "unsupported-graph",
        `graph input "${name}" is not a tensor of a supported element type`,
      );
    }
    const dims = inputShape(name, tt.shape ? (tt.shape.dim ?? []) : undefined, opts, chosen);
    result.set(name, { dims });
    if (type === "float16") {
      // onnxruntime-node under Deno cannot read float16 input buffers: feed float32, cast inside.
      const f32 = `${name}__probe_float32`;
      feeds[f32] = makeFeed(ort, "float32", dims);
      castInputs.push({
        f32,
        name,
        node: onnx.NodeProto.create({
          opType: "Cast",
          input: [f32],
          output: [name],
          attribute: [onnx.AttributeProto.create({ name: "to", type: 2, i: 10 })],
        }),
      });
      continue;
    }
    feeds[name] = makeFeed(ort, type, dims);
    // An all-zero attention mask hides every position: onnxruntime-genai's graphs turn it into a
    // sequence length of -1, which GroupQueryAttention refuses. Ones attend everywhere.
    if (/attention_mask/i.test(name) && type !== "bool") {
      const data = feeds[name].data as unknown as { fill: (v: number | bigint) => void };
      data.fill(type === "int64" || type === "uint64" ? 1n : 1);
    }
  }

  // A shallow copy of the model whose graph lists every node output as a graph output.
  const declared = new Set((graph.output ?? []).map((o) => o.name ?? ""));
  const outputs = [...(graph.output ?? [])];
  for (const node of graph.node ?? []) {
    for (const out of node.output ?? []) {
      if (out && !declared.has(out) && !initNames.has(out)) {
        outputs.push(onnx.ValueInfoProto.create({ name: out }));
        declared.add(out);
      }
    }
  }
  const probeGraph = onnx.GraphProto.create({
    ...graph,
    output: outputs,
    node: [...castInputs.map((c) => c.node), ...(graph.node ?? [])],
    input: (graph.input ?? []).map((v) => {
      const cast = castInputs.find((c) => c.name === v.name);
      if (!cast) return v;
      const type = onnx.TypeProto.create({
        tensorType: { elemType: 1, shape: v.type?.tensorType?.shape },
      });
      return onnx.ValueInfoProto.create({ name: cast.f32, type });
    }),
  });
  const probeModel = onnx.ModelProto.create({ ...model, graph: probeGraph });

  let session;
  try {
    session = await createSession(encodeModel(probeModel), {}, purpose);
  } catch (e) {
    if (e instanceof PruneError && e.code === "permission") throw e;
    throw new PruneError("probe-failed", `onnxruntime cannot load the model: ${firstLine(e)}`);
  }
  const maxValues = opts.maxValues ?? 64;
  try {
    const results = await session.run(feeds);
    for (const [name, t] of Object.entries(results)) {
      const entry: ProbedTensor = { dims: Array.from(t.dims as ArrayLike<number>, Number) };
      if (t.size <= maxValues && t.data && t.type !== "string") {
        entry.values = Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
      }
      result.set(name, entry);
      t.dispose?.();
    }
  } catch (e) {
    throw new PruneError(
      "probe-failed",
      `onnxruntime cannot run the model on synthetic inputs (${
        Object.entries(feeds).map(([k, v]) => `${k}: [${v.dims}]`).join(", ")
      }): ${firstLine(e)}. ${
        chosen.size
          ? `Symbolic dims were sized ${describeDims(chosen.values())}; if one needs another ` +
            `size, give it (--dim NAME=N)`
          : "The inputs have no symbolic dims to resize"
      }`,
    );
  } finally {
    await session.release?.();
  }
  return result;
}
