/**
 * Cutting (or masking) block-quantized MatMulNBits weights. Output channels are whole rows of
 * the weight, its scales and its zero points. Input channels are cut at whole blocks when the
 * kept ones are whole blocks (exact); otherwise the kept real values are re-quantized to the
 * same block size and bits (not exact: the report names the layer). Masking sets q values to
 * their zero point (exactly 0), rows and columns alike. The node's K and N attributes follow.
 *
 * @module
 */
import type { ConstantRef, Graph, NodeProto } from "../graph/graph.ts";
import { writeConstant } from "../graph/graph.ts";
import { float32ToTensorBytes, makeTensor, tensorDims, tensorToFloat32 } from "../onnx/tensor.ts";
import type { TensorTouch } from "../analysis/trace.ts";
import {
  dequantize,
  pack,
  type PackedLayout,
  packedZeroPoints,
  packZeroPoints,
  unpack,
} from "../analysis/quantization.ts";
import { keptAxisIndices, type Plan } from "../plan.ts";

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Writes a constant input of `node`: in place when only this node reads it, else a copy. */
function store(
  graph: Graph,
  node: NodeProto,
  index: number,
  ref: ConstantRef,
  bytes: Uint8Array,
  dims: number[],
) {
  if (graph.constantUseCount(ref) === 1) {
    writeConstant(ref, bytes, dims);
    if (ref.home === "initializer") graph.setDeclaredDims(ref.name, dims);
    return;
  }
  const name = graph.addInitializer(
    makeTensor(`${ref.name}_pruned`, ref.tensor.dataType!, dims, bytes),
  );
  graph.rewire({ node, inputIndex: index }, name);
}

function setAttr(node: NodeProto, name: string, value: number) {
  const a = node.attribute.find((x) => x.name === name);
  if (a) a.i = value;
}

/** Whether the kept input channels are whole blocks; the kept blocks when they are. */
function wholeBlocks(kept: number[], k: number, blockSize: number): number[] | undefined {
  const keep = new Set(kept);
  const blocks: number[] = [];
  for (let b = 0; b * blockSize < k; b++) {
    const members = range(Math.min(blockSize, k - b * blockSize)).map((j) => b * blockSize + j);
    const n = members.filter((m) => keep.has(m)).length;
    if (n === members.length) blocks.push(b);
    else if (n !== 0) return undefined;
  }
  return blocks;
}

/**
 * Rewrites the MatMulNBits weights the plan touches. Returns how many layers changed and the
 * names of those whose input channels were re-quantized.
 */
export function rewritePackedWeights(
  graph: Graph,
  plan: Plan,
  touches: TensorTouch[],
  mode: "slice" | "mask",
): { rewritten: number; requantized: string[] } {
  const byNode = new Map<
    NodeProto,
    { layout: PackedLayout; ref: ConstantRef; rows?: number[]; cols?: number[] }
  >();
  for (const t of touches) {
    const layout = t.quant!.packed!;
    const entry = byNode.get(layout.node) ?? { layout, ref: t.ref };
    const kept = keptAxisIndices(plan, t.factors);
    if (kept && t.role === "weight-out") entry.rows = kept;
    if (kept && t.role === "weight-in") entry.cols = kept;
    byNode.set(layout.node, entry);
  }
  const requantized: string[] = [];
  let rewritten = 0;
  for (const [node, { layout, ref, rows, cols }] of byNode) {
    if (!rows && !cols) continue;
    rewritten++;
    const [n, blocks, blob] = tensorDims(ref.tensor);
    const bs = layout.blockSize;
    const q = unpack(ref.tensor, layout);
    const zp = packedZeroPoints(layout, blocks);
    if (mode === "mask") {
      const keepRows = new Set(rows ?? range(n)), keepCols = new Set(cols ?? range(layout.k));
      for (let r = 0; r < n; r++) {
        for (let k = 0; k < blocks * bs; k++) {
          if (keepRows.has(r) && (k >= layout.k || keepCols.has(k))) continue;
          q[r * blocks * bs + k] = zp[r * blocks + Math.floor(k / bs)];
        }
      }
      store(graph, node, 1, ref, pack(q, n, blocks, layout), [n, blocks, blob]);
      continue;
    }
    const keptRows = rows ?? range(n);
    const keptCols = cols ?? range(layout.k);
    const scales = tensorToFloat32(layout.scales.tensor);
    const whole = wholeBlocks(keptCols, layout.k, bs);
    let newQ: Uint8Array, newScales: Float32Array, newZp: Uint8Array, newBlocks: number;
    if (whole) {
      newBlocks = whole.length;
      newQ = new Uint8Array(keptRows.length * newBlocks * bs);
      newScales = new Float32Array(keptRows.length * newBlocks);
      newZp = new Uint8Array(keptRows.length * newBlocks);
      keptRows.forEach((r, i) => {
        whole.forEach((b, j) => {
          newQ.set(
            q.subarray((r * blocks + b) * bs, (r * blocks + b + 1) * bs),
            (i * newBlocks + j) * bs,
          );
          newScales[i * newBlocks + j] = scales[r * blocks + b];
          newZp[i * newBlocks + j] = zp[r * blocks + b];
        });
      });
    } else {
      ({ q: newQ, scales: newScales, zeroPoints: newZp, blocks: newBlocks } = requantize(
        dequantize(ref.tensor, { axis: null, packed: layout }).data,
        layout,
        keptRows,
        keptCols,
      ));
      requantized.push(node.name || node.output[0]);
    }
    const m = keptRows.length;
    store(graph, node, 1, ref, pack(newQ, m, newBlocks, layout), [m, newBlocks, blob]);
    const sdims = tensorDims(layout.scales.tensor).length === 2 ? [m, newBlocks] : [m * newBlocks];
    store(
      graph,
      node,
      2,
      layout.scales,
      float32ToTensorBytes(newScales, layout.scales.tensor.dataType!),
      sdims,
    );
    if (layout.zeroPoints) {
      const bytes = packZeroPoints(newZp, m, newBlocks, layout.bits);
      const zdims = tensorDims(layout.zeroPoints.tensor).length === 2
        ? [m, bytes.length / m]
        : [bytes.length];
      store(graph, node, 3, layout.zeroPoints, bytes, zdims);
    }
    setAttr(node, "N", m);
    setAttr(node, "K", keptCols.length);
  }
  return { rewritten, requantized };
}

/**
 * Kept values [rows × kept columns] quantized again in blocks of the same size: symmetric
 * around the implicit zero point when the layer has no zero points, else min/max with a
 * zero point (the range always holding 0).
 */
function requantize(values: Float32Array, layout: PackedLayout, rows: number[], cols: number[]) {
  const bs = layout.blockSize, levels = (1 << layout.bits) - 1;
  const blocks = Math.ceil(cols.length / bs);
  const q = new Uint8Array(rows.length * blocks * bs);
  const scales = new Float32Array(rows.length * blocks);
  const zeroPoints = new Uint8Array(rows.length * blocks);
  const mid = 1 << (layout.bits - 1);
  rows.forEach((r, i) => {
    for (let b = 0; b < blocks; b++) {
      const v = cols.slice(b * bs, (b + 1) * bs).map((c) => values[r * layout.k + c]);
      let lo = 0, hi = 0;
      for (const x of v) lo = Math.min(lo, x), hi = Math.max(hi, x);
      let scale: number, zp: number;
      if (layout.zeroPoints) {
        scale = (hi - lo) / levels;
        zp = scale > 0 ? Math.min(levels, Math.max(0, Math.round(-lo / scale))) : 0;
      } else {
        scale = Math.max(hi, -lo) / (mid - 1);
        zp = mid;
      }
      const cell = i * blocks + b;
      scales[cell] = scale;
      zeroPoints[cell] = zp;
      for (let j = 0; j < bs; j++) {
        const x = j < v.length ? v[j] : 0;
        q[cell * bs + j] = scale > 0
          ? Math.min(levels, Math.max(0, Math.round(x / scale) + zp))
          : zp;
      }
    }
  });
  return { q, scales, zeroPoints, blocks };
}
