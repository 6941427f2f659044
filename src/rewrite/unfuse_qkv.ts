/**
 * Splits a fused q/k/v projection into three projections, so that Q/K head dims and V head dims
 * can be pruned separately (NViT). In a fused export (timm's `qkv`) one linear layer produces
 * [3·H·D] channels, reshaped to [..., 3, H, D], permuted, and split into q, k and v: the head
 * size D is one factor for all three. Rewritten, each of q, k and v is its own
 * MatMul (+ bias) → Reshape → Transpose, computing exactly the same values; the old chain is left
 * unused and dropped.
 *
 * @module
 */
import type { ComputeCore } from "../core/mod.ts";
import { PruneError } from "../errors.ts";
import { attrInt, attrInts, Graph, type GraphProto, type NodeProto } from "../graph/graph.ts";
import type { ConstantRef, Use } from "../graph/graph.ts";
import type { ModelProto } from "../onnx/proto.ts";
import { onnx } from "../onnx/proto.ts";
import {
  elementSize,
  makeTensor,
  numbersToTensorBytes,
  tensorDims,
  tensorRawBytes,
} from "../onnx/tensor.ts";
import type { ProbedTensor } from "../runtime/probe.ts";

function product(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** The constant weight of a MatMul, as [in, out] columns: stored as is, or behind a Transpose. */
function matmulWeight(
  graph: Graph,
  node: NodeProto,
): { ref: ConstantRef; transposed: boolean } | undefined {
  const direct = graph.constant(node.input[1]);
  if (direct) return { ref: direct, transposed: false };
  const t = graph.producer(node.input[1]);
  const perm = t ? attrInts(t, "perm") : undefined;
  if (t?.opType !== "Transpose" || (perm && String(perm) !== "1,0")) return undefined;
  const ref = graph.constant(t.input[0]);
  return ref && tensorDims(ref.tensor).length === 2 ? { ref, transposed: true } : undefined;
}

/** One q, k or v tensor taken out of the fused, permuted tensor, and the index it takes. */
interface Selection {
  index: number;
  /** The tensor holding this selection without the selected axis. */
  output: string;
}

/** Reads the three selections along `axis` of `tensor`, or undefined when the pattern differs. */
function selections(graph: Graph, tensor: string, axis: number, shapes: Map<string, ProbedTensor>) {
  const found: Selection[] = [];
  const squeezed = (name: string): string | undefined => {
    const uses = graph.consumers(name);
    if (uses.length !== 1 || uses[0].node.opType !== "Squeeze") return undefined;
    const sq = uses[0].node;
    const axes = sq.input[1] ? graph.constantInts(sq.input[1]) : attrInts(sq, "axes");
    const rank = shapes.get(name)?.dims.length ?? 0;
    return axes?.length === 1 && (axes[0] + rank) % rank === axis ? sq.output[0] : undefined;
  };
  for (const { node } of graph.consumers(tensor)) {
    if (node.opType === "Split" && attrInt(node, "axis", 0) === axis && node.output.length === 3) {
      const sizes = node.input[1] ? graph.constantInts(node.input[1]) : attrInts(node, "split");
      if (sizes && sizes.some((s) => s !== 1)) return undefined;
      for (let i = 0; i < 3; i++) {
        const out = squeezed(node.output[i]);
        if (!out) return undefined;
        found.push({ index: i, output: out });
      }
    } else if (node.opType === "Gather" && attrInt(node, "axis", 0) === axis) {
      const ref = graph.constant(node.input[1]);
      const idx = graph.constantInts(node.input[1]);
      if (!ref || !idx || tensorDims(ref.tensor).length !== 0) return undefined;
      found.push({ index: idx[0], output: node.output[0] });
    } else if (node.opType === "Slice") {
      const starts = graph.constantInts(node.input[1]), ends = graph.constantInts(node.input[2]);
      const axes = node.input[3] ? graph.constantInts(node.input[3]) : [0];
      const steps = node.input[4] ? graph.constantInts(node.input[4]) : [1];
      if (!starts || !ends || axes?.length !== 1 || axes[0] !== axis || steps?.[0] !== 1) {
        return undefined;
      }
      if (ends[0] !== starts[0] + 1) return undefined;
      const out = squeezed(node.output[0]);
      if (!out) return undefined;
      found.push({ index: starts[0], output: out });
    } else {
      return undefined;
    }
  }
  const indices = found.map((f) => f.index).sort();
  return indices.join() === "0,1,2" ? found : undefined;
}

/**
 * Rewrites every fused q/k/v projection it recognises; returns how many. Needs the probe's
 * shapes of the original model.
 */
export async function unfuseQkv(
  core: ComputeCore,
  model: ModelProto,
  shapes: Map<string, ProbedTensor>,
): Promise<number> {
  const graph = new Graph(model.graph as GraphProto);
  const before = graph.deadParts();
  const fusedProjections: NodeProto[] = [];
  let count = 0;
  for (const reshape of [...graph.nodes]) {
    if (reshape.opType !== "Reshape") continue;
    const inDims = shapes.get(reshape.input[0])?.dims,
      outDims = shapes.get(reshape.output[0])?.dims;
    if (!inDims || !outDims) continue;
    const width = inDims[inDims.length - 1];
    const s = outDims.findIndex((d, i) =>
      d === 3 && product(outDims.slice(i + 1)) * 3 === width &&
      product(outDims.slice(0, i)) === product(inDims.slice(0, -1))
    );
    if (s < 0) continue;
    const targetValues = graph.constantInts(reshape.input[1]) ??
      shapes.get(reshape.input[1])?.values;
    // A 0 ("copy the input dim") keeps its meaning only before the removed q/k/v element.
    const copies = !attrInt(reshape, "allowzero", 0) &&
      targetValues?.some((v, i) => v === 0 && i >= s);
    if (!targetValues || copies) continue;
    // The projection: MatMul(x, W) with an optional constant bias Add.
    let producer = graph.producer(reshape.input[0]);
    let bias: ConstantRef | undefined;
    if (producer?.opType === "Add") {
      // Only a constant bias of exactly 3·H·D values, added to the MatMul's own output.
      const k = graph.constant(producer.input[0]) ? 0 : 1;
      bias = graph.constant(producer.input[k]);
      const matmulOut = producer.input[1 - k];
      const sameShape = String(shapes.get(matmulOut)?.dims) === String(inDims);
      if (!bias || product(tensorDims(bias.tensor)) !== width || !sameShape) continue;
      producer = graph.producer(matmulOut);
    }
    if (!producer || producer.opType !== "MatMul") continue;
    const weight = matmulWeight(graph, producer);
    if (!weight) continue;
    // Layout ops after the reshape (Transpose, Unsqueeze, Squeeze), then the three selections
    // along wherever the q/k/v axis has moved.
    const chain = layoutChain(graph, reshape.output[0], s, outDims.length);
    const picked = selections(graph, chain.tensor, chain.axis, shapes);
    if (!picked) continue;
    const c = width / 3;
    const label = producer.name || producer.output[0];
    const added: NodeProto[] = [];
    // The three projections go right after the fused one; the head reshapes before the reshape.
    const projections: NodeProto[] = [];
    const partOutputs: string[] = [];
    const constant = (name: string, dataType: number, dims: number[], bytes: Uint8Array) =>
      graph.addInitializer(makeTensor(name, dataType, dims, bytes));
    const keepAxes = outDims.map((_, i) => i).filter((i) => i !== s);
    const targetIndex = constant(
      `${label}_target_index`,
      7,
      [keepAxes.length],
      numbersToTensorBytes(keepAxes, 7),
    );
    for (const { index, output } of picked) {
      const part = Uint32Array.from({ length: c }, (_, j) => index * c + j);
      const wdims = tensorDims(weight.ref.tensor);
      const size = elementSize(weight.ref.tensor.dataType!);
      const outAxis = weight.transposed ? 0 : 1;
      const wBytes = await core.gatherAxis(
        tensorRawBytes(weight.ref.tensor),
        wdims,
        size,
        outAxis,
        part,
      );
      // Stored as [in, out] columns so the new MatMul needs no Transpose.
      const inAxisSize = wdims[1 - outAxis];
      const wFinal = weight.transposed ? transpose2d(wBytes, c, inAxisSize, size) : wBytes;
      const suffix = ["q", "k", "v"][index];
      const w = constant(
        `${label}_${suffix}_weight`,
        weight.ref.tensor.dataType!,
        [inAxisSize, c],
        wFinal,
      );
      const mm = graph.uniqueName(`${label}_${suffix}`);
      added.push(
        onnx.NodeProto.create({
          opType: "MatMul",
          name: mm,
          input: [producer.input[0], w],
          output: [graph.uniqueName(`${mm}_output`)],
        }),
      );
      let current = added[added.length - 1].output[0];
      if (bias) {
        const bBytes = await core.gatherAxis(
          tensorRawBytes(bias.tensor),
          [width],
          elementSize(bias.tensor.dataType!),
          0,
          part,
        );
        const b = constant(`${label}_${suffix}_bias`, bias.tensor.dataType!, [c], bBytes);
        const add = graph.uniqueName(`${label}_${suffix}_bias_add`);
        added.push(
          onnx.NodeProto.create({
            opType: "Add",
            name: add,
            input: [current, b],
            output: [graph.uniqueName(`${add}_output`)],
          }),
        );
        current = added[added.length - 1].output[0];
      }
      partOutputs[index] = current;
      projections.push(...added.splice(0));
      const tgt = graph.uniqueName(`${label}_${suffix}_target`);
      added.push(
        onnx.NodeProto.create({
          opType: "Gather",
          name: tgt,
          input: [reshape.input[1], targetIndex],
          output: [graph.uniqueName(`${tgt}_output`)],
          attribute: [onnx.AttributeProto.create({ name: "axis", type: 2, i: 0 })],
        }),
      );
      const rs = graph.uniqueName(`${label}_${suffix}_heads`);
      added.push(
        onnx.NodeProto.create({
          opType: "Reshape",
          name: rs,
          input: [current, added[added.length - 1].output[0]],
          output: [graph.uniqueName(`${rs}_output`)],
          attribute: reshape.attribute.map((a) => onnx.AttributeProto.create(a)),
        }),
      );
      current = added[added.length - 1].output[0];
      for (const step of chain.steps) {
        const name = graph.uniqueName(`${label}_${suffix}_${step.opType.toLowerCase()}`);
        const inputs = [current];
        const attribute = [];
        if (step.opType === "Transpose") {
          attribute.push(onnx.AttributeProto.create({ name: "perm", type: 7, ints: step.values }));
        } else if (step.axesAsInput) {
          inputs.push(
            constant(`${name}_axes`, 7, [step.values.length], numbersToTensorBytes(step.values, 7)),
          );
        } else {
          attribute.push(onnx.AttributeProto.create({ name: "axes", type: 7, ints: step.values }));
        }
        added.push(onnx.NodeProto.create({
          opType: step.opType,
          name,
          input: inputs,
          output: [graph.uniqueName(`${name}_output`)],
          attribute,
        }));
        current = added[added.length - 1].output[0];
      }
      for (const use of [...graph.consumers(output)]) graph.rewire(use as Use, current);
    }
    // Run-time shapes read from the fused output (a reshape target built from Shape(qkv)) are
    // rebuilt from q's shape, so that nothing keeps the fused projection alive.
    const fusedOutputs = [...new Set([producer.output[0], reshape.input[0]])];
    for (const fused of fusedOutputs) {
      for (const { node } of [...graph.consumers(fused)]) {
        if (node.opType !== "Shape") continue;
        const rank = shapes.get(fused)?.dims.length ?? 0;
        let start = attrInt(node, "start", 0), end = attrInt(node, "end", rank);
        if (start < 0) start += rank;
        if (end < 0) end += rank;
        end = Math.min(end, rank);
        const shape = graph.uniqueName(`${label}_q_shape`);
        projections.push(onnx.NodeProto.create({
          opType: "Shape",
          name: shape,
          input: [partOutputs[0]],
          output: [graph.uniqueName(`${shape}_output`)],
          attribute: node.attribute.map((a) => onnx.AttributeProto.create(a)),
        }));
        let result = projections[projections.length - 1].output[0];
        if (end === rank && start < rank) {
          const factor = Array.from(
            { length: end - start },
            (_, i) => i === end - start - 1 ? 3 : 1,
          );
          const k = constant(`${shape}_scale`, 7, [factor.length], numbersToTensorBytes(factor, 7));
          const mul = graph.uniqueName(`${label}_qkv_shape`);
          projections.push(onnx.NodeProto.create({
            opType: "Mul",
            name: mul,
            input: [result, k],
            output: [graph.uniqueName(`${mul}_output`)],
          }));
          result = projections[projections.length - 1].output[0];
        }
        for (const use of [...graph.consumers(node.output[0])]) graph.rewire(use as Use, result);
      }
    }
    const last = graph.producer(reshape.input[0])!;
    graph.nodes.splice(graph.nodes.indexOf(last) + 1, 0, ...projections);
    graph.nodes.splice(graph.nodes.indexOf(reshape), 0, ...added);
    fusedProjections.push(producer);
    count++;
  }
  if (count) {
    // Rebuild maps for the inserted nodes, then drop the fused chain.
    const fresh = new Graph(model.graph as GraphProto);
    fresh.removeNewlyDead(before);
    const alive = fusedProjections.find((n) => fresh.nodes.includes(n));
    if (alive) {
      throw new PruneError(
        "unsupported-graph",
        `splitting the fused q/k/v projection "${alive.name}" left it in use elsewhere: Q/K and ` +
          `V dims cannot be pruned separately in this graph (give one head-dim ratio)`,
      );
    }
  }
  return count;
}

/** One layout op of the chain, rewritten for the tensor without the q/k/v axis. */
interface ChainStep {
  opType: "Transpose" | "Unsqueeze" | "Squeeze";
  /** perm, or axes — already renumbered for the tensor without the q/k/v axis. */
  values: number[];
  axesAsInput: boolean;
}

/**
 * Follows single-consumer Transpose / Unsqueeze / Squeeze ops from `tensor` (whose axis `s` of
 * `rank` is the q/k/v axis), tracking where that axis goes, and the same ops as they apply to
 * one of q, k, v (rank one less).
 */
function layoutChain(graph: Graph, tensor: string, s: number, rank: number) {
  const steps: ChainStep[] = [];
  let axis = s;
  for (;;) {
    const uses = graph.consumers(tensor);
    if (uses.length !== 1) break;
    const node = uses[0].node;
    if (node.opType === "Transpose") {
      const perm = attrInts(node, "perm") ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
      steps.push({
        opType: "Transpose",
        values: perm.filter((p) => p !== axis).map((p) => p > axis ? p - 1 : p),
        axesAsInput: false,
      });
      axis = perm.indexOf(axis);
    } else if (node.opType === "Unsqueeze" || node.opType === "Squeeze") {
      const raw = node.input[1] ? graph.constantInts(node.input[1]) : attrInts(node, "axes");
      if (!raw) break;
      const unsqueeze = node.opType === "Unsqueeze";
      const outRank = unsqueeze ? rank + raw.length : rank - raw.length;
      const axes = raw.map((a) => a < 0 ? a + (unsqueeze ? outRank : rank) : a).sort((a, b) =>
        a - b
      );
      if (!unsqueeze && axes.includes(axis)) break;
      // Where the q/k/v axis lands, and the ops' axes for a tensor without it.
      let moved = axis;
      if (unsqueeze) {
        for (const a of axes) if (a <= moved) moved++;
      } else {
        moved -= axes.filter((a) => a < axis).length;
      }
      const pivot = unsqueeze ? moved : axis;
      steps.push({
        opType: node.opType,
        values: axes.map((a) => a > pivot ? a - 1 : a),
        axesAsInput: !!node.input[1],
      });
      axis = moved;
      rank = outRank;
    } else {
      break;
    }
    tensor = node.output[0];
  }
  return { tensor, axis, steps };
}

function transpose2d(bytes: Uint8Array, rows: number, cols: number, size: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < cols; k++) {
      out.set(
        bytes.subarray((r * cols + k) * size, (r * cols + k + 1) * size),
        (k * rows + r) * size,
      );
    }
  }
  return out;
}
