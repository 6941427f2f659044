/**
 * Applies a plan to the graph: slices every constant coupled to removed channels (copy on write
 * when a constant is shared with uses that change differently), rewrites the shape vectors that
 * encode channel counts, freezes shape-derived scalars that must keep their original value (the
 * attention scale computed from the head size), and updates declared shapes.
 *
 * @module
 */
import type { NodeProto, TensorProto } from "./graph/graph.ts";
import { type ComputeCore, gatherAxisNow } from "./core/mod.ts";
import { deferRawData, deferredRawData } from "./onnx/external_data.ts";
import { type Graph, type Use, writeConstant } from "./graph/graph.ts";
import {
  elementSize,
  float32ToTensorBytes,
  makeTensor,
  numbersToTensorBytes,
  tensorDims,
  tensorRawBytes,
  tensorToNumbers,
} from "./onnx/tensor.ts";
import type { ShapeTouch, TensorTouch, Trace } from "./analysis/trace.ts";
import type { Factor } from "./analysis/factors.ts";
import { dimSources, type ShapeElement, shapeElement } from "./analysis/shape_values.ts";
import { keptAxisIndices, type Plan, sizeRatio } from "./plan.ts";
import { attrInt } from "./graph/graph.ts";
import { zeroPointBytes } from "./analysis/quantization.ts";
import { rewritePackedWeights } from "./rewrite/quantized.ts";
import { cutStream, type Sink } from "./rewrite/cut_stream.ts";

/** What the rewrite changed, for reports and tests. */
export interface ApplyStats {
  /** Weights and other constants cut along a pruned axis. */
  tensorsSliced: number;
  /** Elements of shape vectors (Reshape targets, Split sizes, Slice bounds) rewritten. */
  shapeValuesRewritten: number;
  /** Scalars computed from run-time shapes (the attention scale) frozen to their values. */
  scalarsFrozen: number;
  /** Block-quantized layers whose kept input channels were re-quantized (not exact). */
  requantized?: string[];
}

function useKey(use: Use): string {
  return `${use.node.name}|${use.node.output[0]}|${use.inputIndex}`;
}

/** Rewrites the graph in place. */
export async function applyPlan(
  core: ComputeCore,
  trace: Trace,
  plan: Plan,
): Promise<ApplyStats> {
  const stats: ApplyStats = { tensorsSliced: 0, shapeValuesRewritten: 0, scalarsFrozen: 0 };
  if (plan.size === 0) return stats;
  const deadBefore = trace.graph.deadParts();
  // Decide the frozen scalars before anything changes: they read the original shapes.
  const frozen = scalarsToFreeze(trace, plan);
  await sliceConstants(core, trace, plan, stats);
  rewriteShapes(trace, plan, stats);
  for (const f of frozen) {
    const name = trace.graph.addInitializer(f.tensor);
    for (const use of [...trace.graph.consumers(f.output)]) trace.graph.rewire(use, name);
    stats.scalarsFrozen++;
  }
  updateDeclaredShapes(trace, plan);
  for (const rewrite of trace.attributeRewrites) rewrite((f) => sizeRatio(plan, f).num);
  // Copies made on write and frozen scalars can leave originals unused: drop those only.
  trace.graph.removeNewlyDead(deadBefore);
  return stats;
}

/**
 * Zeroes, in place of removing, the channels the plan removes — in the weights that produce them
 * (rows, biases) and in the weights that consume them (columns). The model keeps its shapes:
 * this is the reference the pruned model is checked against. Zeroing the consumers matters where
 * a removed channel's producer is shared (a query head of grouped-query attention reads a V head
 * that other query heads keep).
 *
 * A removed head is silenced by its value and output-projection weights; the other constants
 * along its head axis (biases, per-head score terms, gates) are left as they are, since zeroing
 * a gate that a normalisation then divides by would turn the head's scores into 0/0.
 */
export async function maskPlan(
  core: ComputeCore,
  trace: Trace,
  plan: Plan,
  heads: Set<Factor> = new Set(),
): Promise<ApplyStats> {
  const stats: ApplyStats = { tensorsSliced: 0, shapeValuesRewritten: 0, scalarsFrozen: 0 };
  const operandPlan: Plan = new Map([...plan].filter(([f]) => !heads.has(f)));
  await sliceConstants(core, trace, plan, stats, "mask", operandPlan);
  return stats;
}

/** Sets the channels not kept to zero, or to the bytes `zero` holds there (zero points). */
function zeroOthers(
  bytes: Uint8Array,
  dims: number[],
  size: number,
  axis: number,
  kept: number[],
  zero?: Uint8Array,
) {
  const out = bytes.slice();
  const keep = new Set(kept);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1) * size;
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < dims[axis]; c++) {
      if (keep.has(c)) continue;
      const from = (o * dims[axis] + c) * inner, to = from + inner;
      if (zero) out.set(zero.subarray(from, to), from);
      else out.fill(0, from, to);
    }
  }
  return out;
}

async function sliceConstants(
  core: ComputeCore,
  trace: Trace,
  plan: Plan,
  stats: ApplyStats,
  mode: "slice" | "mask" = "slice",
  operandPlan: Plan = plan,
) {
  const graph = trace.graph;
  // Block-quantized weights are cut with their scales and zero points, layer by layer.
  const packed = trace.tensorTouches.filter((t) => t.quant?.packed);
  const { rewritten, requantized } = rewritePackedWeights(graph, plan, packed, mode);
  if (requantized.length) stats.requantized = requantized;
  stats.tensorsSliced += rewritten;
  // All touches of one use (a weight has an output and an input axis) are applied together.
  const byUse = new Map<string, { use: Use; touches: TensorTouch[] }>();
  for (const t of trace.tensorTouches) {
    if (t.quant?.packed) continue;
    const key = useKey(t.use);
    const entry = byUse.get(key) ?? { use: t.use, touches: [] };
    if (!entry.touches.some((x) => x.axis === t.axis)) entry.touches.push(t);
    byUse.set(key, entry);
  }
  // Group uses by the stored tensor, and by the slicing each one needs.
  const byTensor = new Map<TensorProto, Map<string, { uses: Use[]; cuts: [number, number[]][] }>>();
  for (const { use, touches } of byUse.values()) {
    const cuts: [number, number[]][] = [];
    for (const t of touches) {
      const kept = keptAxisIndices(t.role === "operand" ? operandPlan : plan, t.factors);
      if (kept) cuts.push([t.axis, kept]);
    }
    if (cuts.length === 0) continue;
    cuts.sort((a, b) => a[0] - b[0]);
    const tensor = touches[0].ref.tensor;
    const variants = byTensor.get(tensor) ?? new Map();
    const key = JSON.stringify(cuts);
    const v = variants.get(key) ?? { uses: [], cuts };
    v.uses.push(use);
    variants.set(key, v);
    byTensor.set(tensor, variants);
  }
  for (const [tensor, variants] of byTensor) {
    const ref = trace.tensorTouches.find((t) => t.ref.tensor === tensor)!.ref;
    const useCount = graph.constantUseCount(ref);
    const inPlace = variants.size === 1 && [...variants.values()][0].uses.length === useCount;
    for (const { uses, cuts } of variants.values()) {
      const dims = tensorDims(tensor);
      const size = elementSize(tensor.dataType!);
      const source = mode === "slice" ? deferredRawData(tensor) ?? heldRawData(tensor) : undefined;
      if (source) {
        // Read from a data file (or the model's own bytes) when asked for: cut it then too
        // (while the output is written), so the pruned weights are never all in memory at once.
        const steps = cuts.map(([axis, kept]) => {
          const from = dims.slice();
          dims[axis] = kept.length;
          return { from, axis, kept: Uint32Array.from(kept) };
        });
        const read = () =>
          steps.reduce((b, s) => gatherAxisNow(b, s.from, size, s.axis, s.kept), source.read());
        // Cut along one axis: written in pieces through one reused buffer.
        const [only] = steps;
        const stream = steps.length === 1
          ? (sink: Sink) => cutStream(source.read(), only.from, size, only.axis, only.kept, sink)
          : undefined;
        const length = dims.reduce((a, b) => a * b, 1) * size;
        const target = inPlace
          ? tensor
          : makeTensor(`${ref.name}_pruned`, tensor.dataType!, [], new Uint8Array(size));
        deferRawData(target, length, read, stream);
        target.dims = dims;
        if (!inPlace) {
          const name = graph.addInitializer(target);
          for (const use of uses) graph.rewire(use, name);
        } else if (ref.home === "initializer") graph.setDeclaredDims(ref.name, dims);
        stats.tensorsSliced++;
        continue;
      }
      let bytes = tensorRawBytes(tensor);
      const quant = trace.tensorTouches.find((t) => t.ref.tensor === tensor && t.quant)?.quant;
      const zero = mode === "mask" && quant ? zeroPointBytes(tensor, quant) : undefined;
      for (const [axis, kept] of cuts) {
        if (mode === "mask") {
          bytes = zeroOthers(bytes, dims, size, axis, kept, zero);
          continue;
        }
        bytes = await core.gatherAxis(bytes, dims, size, axis, Uint32Array.from(kept));
        dims[axis] = kept.length;
      }
      if (inPlace) {
        writeConstant(ref, bytes, dims);
        if (ref.home === "initializer") graph.setDeclaredDims(ref.name, dims);
      } else {
        const copy = makeTensor(`${ref.name}_pruned`, tensor.dataType!, dims, bytes);
        const name = graph.addInitializer(copy);
        for (const use of uses) graph.rewire(use, name);
      }
      stats.tensorsSliced++;
    }
  }
}

/** Raw bytes the tensor holds (a view into the model it was read from): a source to cut from
 * when the output is written, as a data file's tensor is. */
function heldRawData(t: TensorProto): { length: number; read: () => Uint8Array } | undefined {
  const raw = Object.getOwnPropertyDescriptor(t, "rawData")?.value;
  if (!(raw instanceof Uint8Array) || raw.length === 0) return undefined;
  return { length: raw.length, read: () => raw };
}

/** Scales a shape value by new/old channel count; throws when the result is not whole. */
function scaled(value: number, ratio: { num: number; den: number }, what: string): number {
  const v = (value * ratio.num) / ratio.den;
  if (!Number.isInteger(v)) {
    throw new Error(`${what}: ${value} does not scale by ${ratio.num}/${ratio.den}`);
  }
  return v;
}

function rewriteShapes(trace: Trace, plan: Plan, stats: ApplyStats) {
  const graph = trace.graph;
  // Edits per constant use: index → new value.
  const edits = new Map<string, { use: Use; values: Map<number, number> }>();
  const edit = (use: Use, index: number, value: number) => {
    const key = useKey(use);
    const e = edits.get(key) ?? { use, values: new Map() };
    e.values.set(index, value);
    edits.set(key, e);
  };
  // Elements set to a new value outright (positions along segmented axes), by use.
  const replaced = new Map<string, { use: Use; values: Map<number, number> }>();
  const splitSizes = new Map<NodeProto, number[]>();
  for (const touch of trace.shapeTouches) {
    if (touch.indices) {
      if (renumberIndices(trace, plan, touch.use, touch.indices)) stats.shapeValuesRewritten++;
      continue;
    }
    if (touch.renumber) {
      const value = renumbered(plan, touch.renumber);
      if (value === undefined) continue;
      if (touch.attribute === "num_outputs") {
        const sizes = splitSizes.get(touch.use.node) ?? [];
        sizes[touch.index] = value;
        splitSizes.set(touch.use.node, sizes);
        continue;
      }
      if (touch.attribute) {
        const a = touch.use.node.attribute!.find((x) => x.name === touch.attribute)!;
        a.ints![touch.index] = value;
        stats.shapeValuesRewritten++;
        continue;
      }
      const path = deepestPath(shapeElement(trace, touch.use, touch.index));
      if (path) privatize(trace, path);
      const element = shapeElement(trace, touch.use, touch.index);
      if (element.kind === "const" && !element.piece) {
        if (element.value !== value) edit(element.use, element.index, value);
        continue;
      }
      // Computed at run time from the fused width, which no longer splits evenly: a constant.
      const key = useKey(touch.use);
      const r = replaced.get(key) ?? { use: touch.use, values: new Map() };
      r.values.set(touch.index, value);
      replaced.set(key, r);
      continue;
    }
    const ratio = sizeRatio(plan, touch.factors);
    // Unchanged when neither the axis nor a run-time size the element reads changes.
    if (ratio.num === ratio.den && !touch.attribute) {
      const sources = dimSources(shapeElement(trace, touch.use, touch.index)) ?? [];
      if (sources.every((d) => isUnchanged(dimRatio(trace, plan, d)))) continue;
    } else if (ratio.num === ratio.den) continue;
    const where = `${touch.use.node.opType} "${touch.use.node.name}"`;
    if (touch.attribute) {
      const a = touch.use.node.attribute!.find((x) => x.name === touch.attribute)!;
      // A scalar attribute (a depthwise convolution's group) or one element of a list.
      if (a.type === 2) a.i = scaled(Number(a.i), ratio, where);
      else a.ints![touch.index] = scaled(Number(a.ints![touch.index]), ratio, where);
      stats.shapeValuesRewritten++;
      continue;
    }
    // A shape vector computed by nodes other consumers read too is made private first, so that
    // this consumer's edit does not reach them.
    const path = deepestPath(shapeElement(trace, touch.use, touch.index));
    if (path) privatize(trace, path);
    const element = shapeElement(trace, touch.use, touch.index);
    if (scaleElement(trace, plan, element, ratio, edit, where)) continue;
    if (!element.piece) {
      throw new Error(`${where}: shape element ${touch.index} cannot be rewritten`);
    }
    // Replace the one-element piece of the shape vector by the new constant value.
    const pieceName = element.piece.node.input[element.piece.inputIndex];
    const old = graph.constantInts(pieceName)?.[0] ?? trace.shapes.get(pieceName)?.values?.[0];
    if (old === undefined) throw new Error(`${where}: value of "${pieceName}" unknown`);
    const bytes = numbersToTensorBytes([scaled(old, ratio, where)], 7);
    const name = graph.addInitializer(makeTensor(`${pieceName}_pruned`, 7, [1], bytes));
    graph.rewire(element.piece, name);
    stats.shapeValuesRewritten++;
  }
  for (const [node, sizes] of splitSizes) {
    spellOutSplit(graph, node, sizes, trace.opset);
    stats.shapeValuesRewritten += sizes.length;
  }
  for (const { use, values } of replaced.values()) {
    replaceVector(trace, use, values);
    stats.shapeValuesRewritten += values.size;
  }
  for (const { use, values } of edits.values()) {
    const ref = graph.constant(use.node.input[use.inputIndex])!;
    const old = tensorToNumbers(ref.tensor);
    const next = old.map((v, i) => values.get(i) ?? v);
    const bytes = numbersToTensorBytes(next, ref.tensor.dataType!);
    const dims = tensorDims(ref.tensor);
    if (graph.constantUseCount(ref) === 1) {
      writeConstant(ref, bytes, dims);
    } else {
      const name = graph.addInitializer(
        makeTensor(`${ref.name}_pruned`, ref.tensor.dataType!, dims, bytes),
      );
      graph.rewire(use, name);
    }
    stats.shapeValuesRewritten += values.size;
  }
}

type Ratio = { num: number; den: number };

/**
 * Gather indices along a pruned axis: the kept ones of `picked`, in the new numbering, as a new
 * constant. False when nothing on the axis goes.
 */
function renumberIndices(
  trace: Trace,
  plan: Plan,
  use: Use,
  { axis, picked }: NonNullable<ShapeTouch["indices"]>,
): boolean {
  const kept = keptAxisIndices(plan, axis);
  if (!kept) return false;
  const position = new Map(kept.map((k, i) => [k, i]));
  const next = picked.filter((i) => position.has(i)).map((i) => position.get(i)!);
  const where = `${use.node.opType} "${use.node.name}"`;
  if (next.length === 0) throw new Error(`${where}: every gathered channel would go`);
  const name = use.node.input[use.inputIndex];
  const type = trace.graph.constant(name)?.tensor.dataType ?? 7;
  const tensor = makeTensor(
    `${name}_pruned`,
    type,
    [next.length],
    numbersToTensorBytes(next, type),
  );
  trace.graph.rewire(use, trace.graph.addInitializer(tensor));
  return true;
}

/** New value of a position along a segmented axis; undefined when nothing on the axis goes. */
function renumbered(plan: Plan, r: NonNullable<ShapeTouch["renumber"]>): number | undefined {
  const kept = keptAxisIndices(plan, r.axis);
  if (!kept) return undefined;
  let count = 0;
  for (const k of kept) if (k >= r.from && k < r.to) count++;
  return r.negative ? -count : count;
}

/**
 * A Split into `num_outputs` equal parts whose parts stop being equal gets its sizes spelled out:
 * the `split` attribute before opset 13, an input from then on.
 */
function spellOutSplit(graph: Graph, node: NodeProto, sizes: number[], opset: number): void {
  node.attribute = (node.attribute ?? []).filter((x) => x.name !== "num_outputs");
  if (opset < 13) {
    node.attribute.push({ name: "split", type: 7, ints: sizes });
    return;
  }
  const name = graph.addInitializer(
    makeTensor(
      `${node.name || node.output[0]}_sizes`,
      7,
      [sizes.length],
      numbersToTensorBytes(sizes, 7),
    ),
  );
  node.input[1] = name;
}

/**
 * Replaces the shape vector read at `use` by a constant: its elements known from the graph, with
 * `values` at their indices. Refused when another element depends on run-time sizes.
 */
function replaceVector(trace: Trace, use: Use, values: Map<number, number>): void {
  const graph = trace.graph;
  const name = use.node.input[use.inputIndex];
  const where = `${use.node.opType} "${use.node.name}"`;
  const known = graph.constantInts(name) ?? trace.shapes.get(name)?.values;
  if (!known) throw new Error(`${where}: value of "${name}" unknown`);
  const next = known.map((v, i) => {
    const value = values.get(i);
    if (value !== undefined) return value;
    if (shapeElement(trace, use, i).kind !== "const") {
      throw new Error(`${where}: element ${i} of "${name}" depends on run-time sizes`);
    }
    return v;
  });
  const type = graph.constant(name)?.tensor.dataType ?? 7;
  const tensor = makeTensor(
    `${name}_pruned`,
    type,
    [next.length],
    numbersToTensorBytes(next, type),
  );
  graph.rewire(use, graph.addInitializer(tensor));
}

function isUnchanged(r: Ratio): boolean {
  return r.num === r.den;
}

/** The longest chain of uses walked to resolve an element (through to its constant). */
function deepestPath(e: ShapeElement): Use[] | undefined {
  const paths: (Use[] | undefined)[] = [e.path];
  if (e.kind === "product") paths.push(...e.terms.map(deepestPath));
  if (e.kind === "quotient") paths.push(deepestPath(e.dividend), deepestPath(e.divisor));
  return paths.filter((p) => p).sort((a, b) => b!.length - a!.length)[0];
}

/** Clones the shared part of a path; the clones' outputs get the probe facts of the originals. */
function privatize(trace: Trace, path: Use[]): void {
  const now = trace.graph.privatize(path);
  now.forEach((use, j) => {
    if (use.node === path[j].node) return;
    path[j].node.output.forEach((o, k) => {
      const probed = trace.shapes.get(o);
      if (probed) trace.shapes.set(use.node.output[k], probed);
    });
  });
}

function dimRatio(trace: Trace, plan: Plan, e: { tensor: string; axis: number }): Ratio {
  const axes = trace.axes.get(e.tensor);
  return axes ? sizeRatio(plan, axes[e.axis]) : { num: 1, den: 1 };
}

/**
 * Records the edits that make a shape element scale by `ratio`; false when its form does not
 * allow it (the caller may then replace the whole element).
 */
function scaleElement(
  trace: Trace,
  plan: Plan,
  e: ShapeElement,
  ratio: Ratio,
  edit: (use: Use, index: number, value: number) => void,
  where: string,
): boolean {
  switch (e.kind) {
    case "const":
      edit(e.use, e.index, scaled(e.value, ratio, where));
      return true;
    case "dim": {
      const own = dimRatio(trace, plan, e);
      return own.num * ratio.den === own.den * ratio.num;
    }
    case "product": {
      const c = e.terms.find((t) => t.kind === "const");
      if (!c || c.kind !== "const" || !e.terms.every((t) => t === c || t.kind === "dim")) {
        return false;
      }
      let num = ratio.num, den = ratio.den;
      for (const t of e.terms) {
        if (t.kind !== "dim") continue;
        const r = dimRatio(trace, plan, t);
        num *= r.den;
        den *= r.num;
      }
      const v = (c.value * num) / den;
      if (!Number.isInteger(v)) return false;
      edit(c.use, c.index, v);
      return true;
    }
    case "quotient": {
      const { dividend: a, divisor: b } = e;
      if (b.kind !== "const" || a.kind !== "dim") return false;
      const r = dimRatio(trace, plan, a);
      const v = (b.value * r.num * ratio.den) / (r.den * ratio.num);
      if (!Number.isInteger(v)) return false;
      edit(b.use, b.index, v);
      return true;
    }
    default:
      return false;
  }
}

/**
 * Cast nodes that turn the size of a pruned axis into a float (the 1/sqrt(head_dim) scale of a
 * decomposed scaled_dot_product_attention) are replaced by their original value, so the
 * attention scale of the original model is kept.
 */
function scalarsToFreeze(trace: Trace, plan: Plan): { output: string; tensor: TensorProto }[] {
  const out: { output: string; tensor: TensorProto }[] = [];
  for (const node of trace.graph.allNodes()) {
    if (node.opType !== "Cast" || ![1, 10, 11, 16].includes(attrInt(node, "to", 0))) continue;
    const input = trace.shapes.get(node.input[0]);
    if (!input || input.dims.reduce((a, b) => a * b, 1) > 8) continue;
    const n = input.dims.reduce((a, b) => a * b, 1);
    const elements = Array.from(
      { length: n },
      (_, i) => shapeElement(trace, { node, inputIndex: 0 }, i),
    );
    let changes = false;
    for (const e of elements) {
      for (const s of dimSources(e) ?? []) {
        const axes = trace.axes.get(s.tensor);
        if (axes && sizeRatio(plan, axes[s.axis]).num !== sizeRatio(plan, axes[s.axis]).den) {
          changes = true;
        }
      }
    }
    if (!changes) continue;
    // The original value, from the original dims (not from the probe's float readback).
    const values = elements.map((e) => evaluate(trace, e));
    if (values.some((v) => v === undefined)) continue;
    out.push({
      output: node.output[0],
      tensor: frozenTensor(node, input.dims, values as number[]),
    });
  }
  return out;
}

/** Value of a shape element in the original model. */
function evaluate(trace: Trace, e: ShapeElement): number | undefined {
  switch (e.kind) {
    case "const":
      return e.value;
    case "dim":
      return trace.shapes.get(e.tensor)?.dims[e.axis];
    case "product": {
      const v = e.terms.map((t) => evaluate(trace, t));
      return v.some((x) => x === undefined) ? undefined : v.reduce((a, b) => a! * b!, 1);
    }
    case "quotient": {
      const a = evaluate(trace, e.dividend), b = evaluate(trace, e.divisor);
      return a === undefined || !b ? undefined : Math.trunc(a / b);
    }
    default:
      return undefined;
  }
}

function frozenTensor(node: NodeProto, dims: number[], values: number[]): TensorProto {
  const to = attrInt(node, "to", 1);
  const name = `${node.output[0]}_frozen`;
  if (to === 11) return makeTensor(name, to, dims, new Uint8Array(new Float64Array(values).buffer));
  return makeTensor(name, to, dims, float32ToTensorBytes(Float32Array.from(values), to));
}

function updateDeclaredShapes(trace: Trace, plan: Plan) {
  // Graph inputs too: a KV cache fed back by the runtime loses the heads the model loses.
  const inputs = trace.graph.proto.input.filter((v) => trace.graph.isGraphInput(v.name ?? ""));
  // And what the bodies of control-flow nodes declare (an If's branch outputs).
  const bodies = trace.graph.bodies.flatMap((b) => [...b.proto.valueInfo, ...b.proto.output]);
  const entries = [
    ...trace.graph.proto.valueInfo!,
    ...trace.graph.proto.output!,
    ...inputs,
    ...bodies,
  ];
  for (const vi of entries) {
    const axes = trace.axes.get(vi.name!);
    const dims = vi.type?.tensorType?.shape?.dim;
    if (!axes || !dims || dims.length !== axes.length) continue;
    dims.forEach((d, i) => {
      if (d.dimValue == null || d.dimParam) return;
      const r = sizeRatio(plan, axes[i]);
      if (r.num !== r.den) d.dimValue = (Number(d.dimValue) * r.num) / r.den;
    });
  }
}
