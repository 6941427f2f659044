/**
 * Where an element of a shape vector comes from: a constant that can be rewritten, the run-time
 * size of some tensor's axis (which follows the pruning by itself), or a product of those
 * (torchvision's `batch · heads`). Exporters build Reshape targets either way.
 *
 * @module
 */
import type { Use } from "../graph/graph.ts";
import { attrInt } from "../graph/graph.ts";
import { tensorDims } from "../onnx/tensor.ts";
import type { Trace } from "./trace.ts";

export type ShapeElement =
  | {
    kind: "const";
    use: Use;
    index: number;
    value: number;
    piece?: Use;
    /** Uses walked from the shape vector's consumer down to `use`. */
    path: Use[];
  }
  | { kind: "dim"; tensor: string; axis: number; piece?: Use; path?: Use[] }
  | { kind: "product"; terms: ShapeElement[]; piece?: Use; path?: Use[] }
  | { kind: "quotient"; dividend: ShapeElement; divisor: ShapeElement; piece?: Use; path?: Use[] }
  | { kind: "unknown"; reason: string; piece?: Use; path?: Use[] };

function length(trace: Trace, name: string): number | undefined {
  const c = trace.graph.constant(name);
  if (c) {
    const d = tensorDims(c.tensor);
    return d.length === 0 ? 1 : d[0];
  }
  const dims = trace.shapes.get(name)?.dims;
  return dims ? (dims.length === 0 ? 1 : dims[0]) : undefined;
}

/** Resolves element `index` of the vector consumed at `use`. */
export function shapeElement(
  trace: Trace,
  use: Use,
  index: number,
  path: Use[] = [],
): ShapeElement {
  const graph = trace.graph;
  const name = use.node.input[use.inputIndex];
  const walked = [...path, use];
  if (walked.length > 32) return { kind: "unknown", reason: "shape expression too deep" };
  const ints = graph.constantInts(name);
  if (ints) {
    const i = ints.length === 1 ? 0 : index;
    return { kind: "const", use, index: i, value: ints[i], path: walked };
  }
  const node = graph.producer(name);
  if (!node) return { kind: "unknown", reason: `"${name}" is a graph input` };
  const at = (inputIndex: number, i: number) =>
    shapeElement(trace, { node, inputIndex }, i, walked);
  switch (node.opType) {
    case "Identity":
    case "Cast":
      return at(0, index);
    case "Unsqueeze":
    case "Squeeze":
    case "Reshape":
    case "Flatten":
      // A shape vector reshaped keeps its element order.
      return at(0, index);
    case "Concat": {
      let offset = 0;
      for (let k = 0; k < node.input.length; k++) {
        const len = length(trace, node.input[k]);
        if (len === undefined) return { kind: "unknown", reason: "Concat piece of unknown length" };
        if (index < offset + len) {
          const e = at(k, index - offset);
          // A one-element piece can be replaced by a constant when nothing else fits.
          if (len === 1 && e.kind !== "const" && e.kind !== "unknown" && !e.piece) {
            e.piece = { node, inputIndex: k };
          }
          return e;
        }
        offset += len;
      }
      return { kind: "unknown", reason: "index outside Concat" };
    }
    case "Shape": {
      const rank = trace.shapes.get(node.input[0])?.dims.length;
      if (rank === undefined) return { kind: "unknown", reason: "Shape of unknown rank" };
      let start = attrInt(node, "start", 0);
      if (start < 0) start += rank;
      return { kind: "dim", tensor: node.input[0], axis: start + index, path: walked };
    }
    case "Gather": {
      if (attrInt(node, "axis", 0) !== 0) return { kind: "unknown", reason: "Gather axis ≠ 0" };
      const idx = graph.constantInts(node.input[1]);
      if (!idx) return { kind: "unknown", reason: "Gather by computed index" };
      const len = length(trace, node.input[0]) ?? 0;
      const i = idx[idx.length === 1 ? 0 : index];
      return at(0, i < 0 ? i + len : i);
    }
    case "Slice": {
      const starts = graph.constantInts(node.input[1]);
      const steps = node.input[4] ? graph.constantInts(node.input[4]) : [1];
      if (!starts || !steps) return { kind: "unknown", reason: "Slice with computed bounds" };
      const len = length(trace, node.input[0]) ?? 0;
      let s = starts[0];
      if (s < 0) s += len;
      return at(0, Math.max(0, s) + index * steps[0]);
    }
    case "Mul": {
      const lenA = length(trace, node.input[0]), lenB = length(trace, node.input[1]);
      return {
        kind: "product",
        terms: [at(0, lenA === 1 ? 0 : index), at(1, lenB === 1 ? 0 : index)],
        path: walked,
      };
    }
    case "Where": {
      // Exporters guard shape vectors with Where(Equal(x, -1), 1, x): follow the branch the
      // condition took in the probe run.
      const cond = trace.shapes.get(node.input[0])?.values;
      if (!cond) return { kind: "unknown", reason: "Where with an unknown condition" };
      const c = cond[cond.length === 1 ? 0 : index];
      const branch = c ? 1 : 2;
      const len = length(trace, node.input[branch]);
      return at(branch, len === 1 ? 0 : index);
    }
    case "Div": {
      const lenA = length(trace, node.input[0]), lenB = length(trace, node.input[1]);
      return {
        kind: "quotient",
        dividend: at(0, lenA === 1 ? 0 : index),
        divisor: at(1, lenB === 1 ? 0 : index),
        path: walked,
      };
    }
    default:
      return { kind: "unknown", reason: `computed by ${node.opType} "${node.name}"` };
  }
}

/**
 * Null when the element can be made to follow a change of channel count (a constant to
 * rewrite, a run-time dim, or a product with exactly one constant); otherwise why not.
 */
export function checkShapeElement(trace: Trace, use: Use, index: number): string | null {
  const e = shapeElement(trace, use, index);
  switch (e.kind) {
    case "const":
    case "dim":
      return null;
    case "product": {
      const consts = e.terms.filter((t) => t.kind === "const").length;
      const ok = e.terms.every((t) => t.kind === "const" || t.kind === "dim");
      return (ok && consts >= 1) || e.piece ? null : "is a product the rewriter cannot scale";
    }
    case "quotient":
      return e.divisor.kind === "const" || e.piece
        ? null
        : "is a quotient the rewriter cannot scale";
    case "unknown":
      return e.reason;
  }
}

/** Run-time dims (tensor, axis) an element depends on; null when it depends on unknown values. */
export function dimSources(e: ShapeElement): { tensor: string; axis: number }[] | null {
  switch (e.kind) {
    case "const":
      return [];
    case "dim":
      return [{ tensor: e.tensor, axis: e.axis }];
    case "quotient":
      return dimSources({ kind: "product", terms: [e.dividend, e.divisor] });
    case "product": {
      const all = e.terms.map(dimSources);
      return all.some((x) => x === null) ? null : all.flat() as { tensor: string; axis: number }[];
    }
    case "unknown":
      return null;
  }
}
