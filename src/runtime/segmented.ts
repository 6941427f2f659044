/**
 * Running a model a stretch of its graph at a time, for models whose weights onnxruntime cannot
 * hold all at once within the memory at hand. onnxruntime's CPU provider holds a float16 model's
 * weights widened to float32 (a 1.1B-parameter model: 4.4 GiB before any run), so one session of
 * the whole model sets the floor of a statistics pass; a session per segment, opened for every
 * batch in turn and closed before the next segment's, holds one segment's weights. What crosses
 * a cut (a transformer's residual stream, its masks) is kept per batch between segments.
 *
 * Only the nodes the requested outputs depend on run. Nodes whose outputs only feed requested
 * outputs (the statistics' reductions, appended after the model) run as soon as their inputs
 * exist, so that what they read does not stay alive to the end of the graph.
 *
 * @module
 */
import type { GraphProto, ModelProto, TensorProto } from "../onnx/proto.ts";
import { onnx } from "../onnx/proto.ts";
import { type NodeProto, subgraphNames } from "../graph/graph.ts";
import { tensorDataSize } from "../onnx/external_data.ts";
import { tensorNumel } from "../onnx/tensor.ts";
import { createModelSession } from "./model_session.ts";
import { ORT_ELEMENT_TYPES, type OrtSession, type OrtTensor } from "./ort.ts";
import { PruneError } from "../errors.ts";

/** One stretch of the graph and what it reads and hands on. */
export interface Segment {
  nodes: NodeProto[];
  initializers: TensorProto[];
  /** Graph inputs its nodes read (fed from each batch). */
  graphInputs: string[];
  /** Tensors computed by earlier segments that its nodes read. */
  carriedIn: string[];
  /** Tensors it computes that later segments read. */
  carriedOut: string[];
  /** Requested outputs it computes. */
  fetch: string[];
  /** Weight bytes as onnxruntime's CPU provider holds them (half floats counted as float32). */
  weightBytes: number;
}

/** Bytes a CPU session holds for a constant: float16 and bfloat16 are widened to float32. */
function heldBytes(t: TensorProto): number {
  return t.dataType === 10 || t.dataType === 16 ? tensorNumel(t) * 4 : tensorDataSize(t);
}

/** Weight bytes one session of `model` would hold (half floats widened, as onnxruntime's CPU
 * provider holds them). */
export function sessionWeightBytes(model: ModelProto): number {
  let n = 0;
  for (const t of model.graph?.initializer ?? []) n += heldBytes(t);
  for (const node of (model.graph?.node ?? []) as NodeProto[]) n += constantBytes(node);
  return n;
}

function constantBytes(node: NodeProto): number {
  if (node.opType !== "Constant") return 0;
  const t = node.attribute.find((a) => a.name === "value")?.t;
  return t ? heldBytes(t as TensorProto) : 0;
}

/** Names a node reads: its inputs and the outer names its subgraphs read. */
function reads(node: NodeProto): string[] {
  return [...node.input, ...subgraphNames(node)].filter((n) => n);
}

/**
 * Cuts `model`'s graph into segments whose weights take at most `budget` bytes each (a node
 * reading more than that is a segment of its own), computing `fetch`. Among the places a
 * segment may end (past half its budget), the one with the fewest tensors crossing it is taken.
 */
export function planSegments(model: ModelProto, fetch: string[], budget: number): Segment[] {
  const graph = model.graph as GraphProto;
  const initializers = new Map((graph.initializer ?? []).map((t) => [t.name, t]));
  const graphInputs = new Set((graph.input ?? []).map((v) => v.name));
  const wanted = new Set(fetch);
  // Only what the requested outputs depend on.
  const needed = new Set(fetch);
  const all = (graph.node ?? []) as NodeProto[];
  const keep: boolean[] = all.map(() => false);
  for (let i = all.length - 1; i >= 0; i--) {
    if (!all[i].output.some((o) => needed.has(o))) continue;
    keep[i] = true;
    for (const name of reads(all[i])) needed.add(name);
  }
  const kept = all.filter((_, i) => keep[i]);
  const missing = fetch.filter((f) =>
    !graphInputs.has(f) && !initializers.has(f) && !kept.some((n) => n.output.includes(f))
  );
  if (missing.length) {
    throw new PruneError("internal", `no node computes "${missing[0]}" for a segmented run`);
  }
  const { nodes, tail } = soonest(kept, wanted);

  const producedAt = new Map<string, number>();
  nodes.forEach((n, i) => n.output.forEach((o) => o && producedAt.set(o, i)));
  const lastUse = new Map<string, number>();
  const cost: number[] = [];
  const counted = new Set<string>();
  nodes.forEach((n, i) => {
    let bytes = constantBytes(n);
    for (const name of reads(n)) {
      if (producedAt.has(name)) lastUse.set(name, i);
      const t = initializers.get(name);
      if (t && !counted.has(name)) {
        counted.add(name);
        bytes += heldBytes(t);
      }
    }
    cost.push(bytes);
  });
  // Tensors alive across the cut after node i.
  const delta: number[] = new Array(nodes.length + 1).fill(0);
  for (const [name, at] of producedAt) {
    const end = lastUse.get(name);
    if (end === undefined || end <= at) continue;
    delta[at]++;
    delta[end]--;
  }
  const crossing: number[] = [];
  for (let i = 0, live = 0; i < nodes.length; i++) crossing.push(live += delta[i]);

  const ends: number[] = [];
  let start = 0, spent = 0;
  // A segment never ends right before a node that only feeds requested outputs: those stay
  // with the node they read from, and a tensor's reductions come back from one run.
  for (let i = 0; i < nodes.length; i++) {
    if (spent + cost[i] > budget && i > start && !tail[i]) {
      // End the segment before node i, where the fewest tensors cross (past half the budget).
      let best = i - 1, acc = 0;
      for (let p = start; p < i; p++) {
        acc += cost[p];
        if (acc >= budget / 2 && !tail[p + 1] && crossing[p] <= crossing[best]) best = p;
      }
      ends.push(best);
      start = best + 1;
      spent = 0;
      for (let p = start; p < i; p++) spent += cost[p];
    }
    spent += cost[i];
  }
  ends.push(nodes.length - 1);

  const segments: Segment[] = [];
  let from = 0;
  for (const end of ends) {
    const part = nodes.slice(from, end + 1);
    const inside = new Set(part.flatMap((n) => n.output));
    const readHere = new Set(part.flatMap(reads));
    const used = [...readHere];
    const segmentInits = used.filter((n) => initializers.has(n) && !inside.has(n));
    segments.push({
      nodes: part,
      initializers: segmentInits.map((n) => initializers.get(n)!),
      graphInputs: used.filter((n) => graphInputs.has(n) && !initializers.has(n)),
      carriedIn: used.filter((n) => (producedAt.get(n) ?? Infinity) < from),
      carriedOut: [...inside].filter((n) => (lastUse.get(n) ?? -1) > end),
      fetch: fetch.filter((f) => inside.has(f)),
      weightBytes: segmentInits.reduce((s, n) => s + heldBytes(initializers.get(n)!), 0) +
        part.reduce((s, n) => s + constantBytes(n), 0),
    });
    from = end + 1;
  }
  return segments;
}

/**
 * The nodes in an order where those that hang off one tensor — they read no other computed
 * tensor, and what they compute only feeds `sinks` or other such nodes (a statistic's
 * reductions) — come right after the node they read from; the others keep their order.
 */
function soonest(
  nodes: NodeProto[],
  sinks: Set<string>,
): { nodes: NodeProto[]; tail: boolean[] } {
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.output.forEach((o) => o && producer.set(o, i)));
  const consumers = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    for (const name of reads(n)) {
      let list = consumers.get(name);
      if (!list) consumers.set(name, list = []);
      list.push(i);
    }
  });
  const tail: boolean[] = nodes.map(() => false);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const computed = new Set(reads(nodes[i]).filter((name) => producer.has(name)));
    const uses = nodes[i].output.map((o) => consumers.get(o) ?? []);
    tail[i] = computed.size <= 1 && uses.every((js) => js.every((j) => tail[j])) &&
      nodes[i].output.some((o, k) => sinks.has(o) || uses[k].length > 0);
  }
  const anchor: number[] = [];
  nodes.forEach((n, i) => {
    if (!tail[i]) return void (anchor[i] = i);
    anchor[i] = Math.max(-1, ...reads(n).map((name) => anchor[producer.get(name) ?? -1] ?? -1));
  });
  const order = nodes.map((_, i) => i);
  order.sort((a, b) => anchor[a] - anchor[b] || Number(tail[a]) - Number(tail[b]) || a - b);
  return { nodes: order.map((i) => nodes[i]), tail: order.map((i) => tail[i]) };
}

const ELEMENT_TYPE_CODES: Record<string, number> = Object.fromEntries(
  Object.entries(ORT_ELEMENT_TYPES).map(([code, name]) => [name, Number(code)]),
);

function segmentModel(
  model: ModelProto,
  segment: Segment,
  carriedTypes: Map<string, string>,
): ModelProto {
  const graph = model.graph as GraphProto;
  const declared = new Map((graph.input ?? []).map((v) => [v.name, v]));
  const names = new Set([
    ...segment.nodes.flatMap((n) => [...n.input, ...n.output]),
    ...segment.carriedIn,
  ]);
  const input = [
    ...segment.graphInputs.map((n) => declared.get(n)!),
    ...segment.carriedIn.map((name) =>
      onnx.ValueInfoProto.create({
        name,
        type: { tensorType: { elemType: ELEMENT_TYPE_CODES[carriedTypes.get(name)!] ?? 0 } },
      })
    ),
  ];
  return onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({
      ...graph,
      node: segment.nodes,
      initializer: segment.initializers,
      input,
      output: [...segment.carriedOut, ...segment.fetch].map((name) =>
        onnx.ValueInfoProto.create({ name })
      ),
      valueInfo: (graph.valueInfo ?? []).filter((v) => names.has(v.name ?? "")),
      sparseInitializer: [],
    }),
  });
}

/**
 * A tensor onnxruntime-node takes back as an input. Where the runtime has Float16Array,
 * onnxruntime's tensors hold float16 data in one, which the native binding reads as empty: the
 * same bits are handed over as a Uint16Array.
 */
function feedable(t: OrtTensor): OrtTensor {
  if (t.type !== "float16" || t.data instanceof Uint16Array) return t;
  const data = t.data as unknown as ArrayBufferView;
  const bits = new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2);
  return { type: "float16", dims: t.dims, data: bits, location: "cpu" } as unknown as OrtTensor;
}

/** One batch's outputs from one segment. */
export interface SegmentOutputs {
  /** The batch's index in the order given. */
  batch: number;
  /** The requested outputs this segment computes for that batch. */
  outputs: Record<string, OrtTensor>;
  /** The segment's index. */
  segment: number;
  /** Whether this is the segment's last batch (its outputs are then all given). */
  last: boolean;
}

/**
 * Runs `model` segment by segment over every batch (see {@link planSegments}), yielding each
 * segment's requested outputs batch after batch: all of the first segment's batches, then the
 * next segment's. One session is open at a time.
 *
 * @example
 * ```ts
 * import { decodeModel } from "../onnx/model_io.ts";
 * const model = decodeModel(await Deno.readFile("llama.onnx"));
 * const segments = planSegments(model, ["logits"], 512 * 2 ** 20);
 * for await (const { batch, outputs } of runSegments(model, segments, batches)) {
 *   console.log(batch, Object.keys(outputs));
 * }
 * ```
 */
export async function* runSegments(
  model: ModelProto,
  segments: Segment[],
  batches: Record<string, OrtTensor>[],
  purpose?: string,
): AsyncGenerator<SegmentOutputs> {
  const lastReader = new Map<string, number>();
  segments.forEach((s, i) => s.carriedIn.forEach((n) => lastReader.set(n, i)));
  const carried = batches.map(() => new Map<string, OrtTensor>());
  const types = new Map<string, string>();
  for (let s = 0; s < segments.length; s++) {
    const segment = segments[s];
    let session: OrtSession | undefined = await createModelSession(
      segmentModel(model, segment, types),
      {},
      purpose,
    );
    try {
      for (let b = 0; b < batches.length; b++) {
        const feeds: Record<string, OrtTensor> = {};
        for (const name of segment.graphInputs) {
          if (batches[b][name]) feeds[name] = batches[b][name];
        }
        for (const name of segment.carriedIn) feeds[name] = carried[b].get(name)!;
        const out = await session!.run(feeds, [...segment.carriedOut, ...segment.fetch]);
        const last = b === batches.length - 1;
        if (last) {
          // Let go of the segment's weights before its last outputs are used (a refit on them
          // need not share the memory with them).
          await session!.release?.();
          session = undefined;
        }
        for (const name of segment.carriedIn) {
          if (lastReader.get(name) === s) carried[b].delete(name);
        }
        for (const name of segment.carriedOut) {
          carried[b].set(name, feedable(out[name]));
          types.set(name, out[name].type);
        }
        const outputs: Record<string, OrtTensor> = {};
        for (const name of segment.fetch) outputs[name] = out[name];
        yield { batch: b, outputs, segment: s, last };
      }
    } finally {
      await session?.release?.();
    }
  }
}
