/**
 * Size and cost of an ONNX model: parameter count and multiply-accumulates (MACs) at batch 1.
 *
 * **Parameters** ({@link countParams}) are what a PyTorch user calls parameters
 * (`sum(p.numel() for p in model.parameters())`): the elements of every floating-point
 * initializer and floating-point `Constant` node tensor with more than one element, plus, for
 * every `Identity` node that forwards such a tensor, that tensor's elements once more (the
 * TorchScript exporter de-duplicates parameters with identical values — e.g. freshly
 * initialised LayerNorm weights — into one initializer and `Identity` copies; each copy was a
 * parameter of its own in PyTorch). Integer tensors (shape vectors, indices) and float scalars /
 * one-element tensors (the attention scale, GELU's `√2`, epsilons: exporter constants, not
 * parameters) are not counted, so a genuine one-element `nn.Parameter` is missed. The integer
 * weights of quantized layers (DequantizeLinear inputs, MatMulInteger and onnxruntime's
 * quantized MatMuls, MatMulNBits' K × N packed values) count one parameter per value. Tensors of
 * subgraphs (`If`/`Loop` bodies) are counted too.
 *
 * **MACs** ({@link countMacs}) follow the fvcore / thop convention of counting one MAC per
 * multiply-accumulate of the matrix products only, at batch 1:
 *
 * - `MatMul` (also `MatMulInteger`, `QLinearMatMul`, com.microsoft `FusedMatMul`,
 *   `DynamicQuantizeMatMul`, `MatMulIntegerToFloat`, `MatMulNBits`):
 *   `numel(output) × K`. This includes the activation × activation products of attention
 *   (`Q·Kᵀ` and `attn·V`); pass `{ attention: false }` to leave them out.
 * - `Gemm`: `M × N × K` (the bias add is not counted).
 * - `Conv`: `numel(output) × (C_in / groups) × ∏kernel` (bias not counted).
 * - `ConvTranspose`: `numel(input) × (C_out / groups) × ∏kernel`.
 *
 * Everything else (bias adds, normalisation, activations, softmax, scaling) counts 0.
 * `torch_pruning.utils.count_ops_and_params` (a ptflops derivative) differs: it also counts
 * bias adds (for `nn.Linear` once per output feature, not per token), 2 per element of
 * LayerNorm, 1 per element of GELU/ReLU, softmax and the query scaling inside timm `Attention`
 * and `nn.MultiheadAttention`, and it counts the `Q·Kᵀ` / `attn·V` products *only* inside those
 * two module types (not, e.g., in Hugging Face `ViTSelfAttention`, where it sees only the
 * Linear layers). On the small test ViTs our number is about 1–2% below Torch-Pruning's for
 * timm / torchvision models and a few % above for Hugging Face ones; ratios before/after
 * pruning agree closely.
 *
 * Shapes come from one onnxruntime run ({@link tensorShapes}); {@link measureModel} does both.
 *
 * @module
 */
import { PruneError } from "./errors.ts";
import { toNumber } from "./onnx/proto.ts";
import type { GraphProto, ModelProto, NodeProto, TensorProto } from "./onnx/proto.ts";
import { isFloatType, tensorDims } from "./onnx/tensor.ts";
import { type ProbeOptions, probeTensors } from "./runtime/probe.ts";

/** Tensor shapes by tensor name (graph inputs, initializers, node outputs). */
export type ShapeMap = Map<string, number[]>;

function numel(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** The tensor of a Constant node, as far as it can be floating point; undefined otherwise. */
function constantFloatNumel(node: NodeProto): number | undefined {
  for (const a of node.attribute ?? []) {
    if (a.name === "value" && a.t) {
      return isFloatType(a.t.dataType ?? 0) ? numel(tensorDims(a.t as TensorProto)) : undefined;
    }
    if (a.name === "value_floats") return (a.floats ?? []).length;
    if (a.name === "value_float") return 1;
  }
  return undefined;
}

function subgraphs(node: NodeProto): GraphProto[] {
  const out: GraphProto[] = [];
  for (const a of node.attribute ?? []) {
    if (a.g) out.push(a.g);
    for (const g of a.graphs ?? []) out.push(g);
  }
  return out;
}

function countGraphParams(graph: GraphProto): number {
  // Every float tensor by name, with its element count (scalars included, for Identity chains).
  const floats = new Map<string, number>();
  let total = 0;
  const add = (name: string | null | undefined, n: number) => {
    if (name) floats.set(name, n);
    if (n > 1) total += n;
  };
  for (const t of graph.initializer ?? []) {
    if (isFloatType(t.dataType ?? 0)) add(t.name, numel(tensorDims(t)));
  }
  for (const node of graph.node ?? []) {
    if (node.opType === "Constant" && (node.domain ?? "") === "") {
      const n = constantFloatNumel(node);
      if (n !== undefined) add(node.output?.[0], n);
    } else if (node.opType === "Identity" && (node.domain ?? "") === "") {
      const n = floats.get(node.input?.[0] ?? "");
      if (n !== undefined) add(node.output?.[0], n);
    }
    for (const g of subgraphs(node)) total += countGraphParams(g);
  }
  return total + quantizedParams(graph);
}

/** Integer weights of quantized layers (not float, so not counted above): one per value. */
function quantizedParams(graph: GraphProto): number {
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? "", t]));
  const seen = new Set<string>();
  let total = 0;
  const count = (name: string | null | undefined) => {
    const t = name ? inits.get(name) : undefined;
    if (!t || seen.has(name!) || isFloatType(t.dataType ?? 0)) return;
    seen.add(name!);
    const n = numel(tensorDims(t));
    if (n > 1) total += n;
  };
  for (const node of graph.node ?? []) {
    const op = node.opType ?? "", ms = node.domain === "com.microsoft";
    const ins = node.input ?? [];
    if (op === "DequantizeLinear") count(ins[0]);
    else if (op === "MatMulInteger" && !node.domain) count(ins[1]);
    else if (ms && (op === "DynamicQuantizeMatMul" || op === "MatMulIntegerToFloat")) count(ins[1]);
    else if (ms && op === "MatMulNBits" && ins[1] && !seen.has(ins[1])) {
      // Packed values: K × N weights, whatever the bits per value.
      seen.add(ins[1]);
      total += attrInt(node, "K", 0) * attrInt(node, "N", 0);
    }
  }
  return total;
}

/**
 * Number of parameters of `model`, PyTorch-style (see the module doc for the exact rule):
 * elements of float initializers and float Constant tensors with more than one element, plus
 * the `Identity` copies the exporter made of de-duplicated parameters.
 *
 * @example
 * ```ts
 * import { countParams, decodeModel } from "@prune/vit";
 * console.log(countParams(decodeModel(await Deno.readFile("vit.onnx"))));
 * ```
 */
export function countParams(model: ModelProto): number {
  if (!model.graph) return 0;
  return countGraphParams(model.graph);
}

/** Options of {@link tensorShapes} (those of the probe run). */
export type ShapeOptions = ProbeOptions;

/**
 * Shapes of every tensor of the main graph at batch 1 (graph inputs, initializers, node
 * outputs), worked out from the graph (one onnxruntime run where an op has no shape rule). A
 * plain number array is taken as the shape of the first graph input.
 *
 * @example
 * ```ts
 * import { countMacs, decodeModel, tensorShapes } from "@prune/vit";
 * const model = decodeModel(await Deno.readFile("vit.onnx"));
 * console.log(countMacs(model, await tensorShapes(model)));
 * ```
 */
export async function tensorShapes(
  model: ModelProto,
  options: ShapeOptions | number[] = {},
): Promise<ShapeMap> {
  const shapes: ShapeMap = new Map();
  for (const t of model.graph?.initializer ?? []) shapes.set(t.name ?? "", tensorDims(t));
  for (const [name, t] of await probeTensors(model, options)) shapes.set(name, t.dims);
  return shapes;
}

/** Options of {@link countMacs}. */
export interface MacOptions {
  /** Count MatMuls whose two operands are both activations (Q·Kᵀ, attn·V). Default true. */
  attention?: boolean;
}

/** onnxruntime's MatMuls: FusedMatMul, and those with quantized weights (input 1). */
const QUANTIZED_MATMULS = new Set([
  "FusedMatMul",
  "DynamicQuantizeMatMul",
  "MatMulIntegerToFloat",
  "MatMulNBits",
]);

/** MACs split by kind; `total` is their sum. */
export interface MacBreakdown {
  /** MatMul with a weight (constant-derived) operand. */
  matmul: number;
  /** MatMul of two activations (attention scores and attention-weighted values). */
  attention: number;
  gemm: number;
  conv: number;
  convTranspose: number;
  total: number;
}

function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  return a?.i == null ? fallback : toNumber(a.i as number);
}

/** Names of tensors computed from constants only (initializers, Constants, and ops on them). */
function constantDerived(graph: GraphProto): Set<string> {
  const consts = new Set<string>((graph.initializer ?? []).map((t) => t.name ?? ""));
  for (const node of graph.node ?? []) {
    const ins = (node.input ?? []).filter((x) => x);
    const isConst = node.opType === "Constant" ||
      (ins.length > 0 && ins.every((x) => consts.has(x)) && subgraphs(node).length === 0);
    if (isConst) { for (const o of node.output ?? []) if (o) consts.add(o); }
  }
  return consts;
}

const FUSED_ATTENTION = new Set(["Attention", "MultiHeadAttention", "GroupQueryAttention"]);

/**
 * onnxruntime's fused attention ops: Q·Kᵀ and P·V over S queries and T keys (past included),
 * B·S·T·(Q width + V width); `Attention` also projects its input by its packed q|k|v weight.
 */
function fusedAttentionMacs(
  node: NodeProto,
  shapeOf: (node: NodeProto, tensor: string | null | undefined) => number[],
): { projection: number; products: number } {
  const ins = node.input ?? [], outs = node.output ?? [];
  const out = shapeOf(node, outs[0]);
  const [batch, queries, vWidth] = [out[0], out[1], out[out.length - 1]];
  const last = (t: string) => shapeOf(node, t)[shapeOf(node, t).length - 1];
  let qWidth = vWidth, keys = queries, projection = 0;
  if (node.opType === "Attention") {
    const w = shapeOf(node, ins[1]);
    const sizes = (node.attribute ?? []).find((a) => a.name === "qkv_hidden_sizes")?.ints;
    qWidth = sizes?.length ? toNumber(sizes[0] as number) : w[1] / 3;
    projection = batch * queries * w[0] * w[1];
    if (outs[1]) keys = shapeOf(node, outs[1])[3];
  } else if (node.opType === "MultiHeadAttention") {
    const q = shapeOf(node, ins[0]);
    qWidth = q.length === 5 ? q[2] * q[4] : q[q.length - 1];
    const k = ins[1] ? shapeOf(node, ins[1]) : undefined;
    keys = outs[1] ? shapeOf(node, outs[1])[2] : k ? (k.length === 4 ? k[2] : k[1]) : queries;
  } else {
    // GroupQueryAttention: one head size for Q and V; keys = past + new when there is a cache.
    if (ins[1]) qWidth = last(ins[0]);
    if (outs[1]) keys = shapeOf(node, outs[1])[2];
  }
  return { projection, products: batch * queries * keys * (qWidth + vWidth) };
}

/**
 * MACs at batch 1 split by kind (see the module doc for the convention). `shapes` must hold
 * the shapes of the tensors the counted nodes read and write (from {@link tensorShapes}); a
 * missing one is a PruneError naming the node.
 */
export function macsBreakdown(model: ModelProto, shapes: ShapeMap): MacBreakdown {
  const b: MacBreakdown = { matmul: 0, attention: 0, gemm: 0, conv: 0, convTranspose: 0, total: 0 };
  const graph = model.graph;
  if (!graph) return b;
  const consts = constantDerived(graph);
  const shapeOf = (node: NodeProto, tensor: string | null | undefined): number[] => {
    const s = tensor ? shapes.get(tensor) : undefined;
    if (!s) {
      throw new PruneError(
        "no-shape",
        `no shape known for tensor "${tensor}" of ${node.opType} node "${node.name ?? ""}"`,
      );
    }
    return s;
  };
  addNodes(graph.node ?? [], b, consts, shapeOf);
  b.total = b.matmul + b.attention + b.gemm + b.conv + b.convTranspose;
  return b;
}

type ShapeOf = (node: NodeProto, tensor: string | null | undefined) => number[];

/**
 * Adds the MACs of a node list. An `If` adds its larger branch (a merged decoder runs one of
 * them; the count is what a run can cost); a branch whose tensors have no shapes adds nothing.
 */
function addNodes(nodes: NodeProto[], b: MacBreakdown, consts: Set<string>, shapeOf: ShapeOf) {
  for (const node of nodes) {
    if (node.opType === "If" && !node.domain) {
      const branches = (node.attribute ?? []).filter((a) => a.g).map((a) => {
        const own: MacBreakdown = {
          ...b,
          matmul: 0,
          attention: 0,
          gemm: 0,
          conv: 0,
          convTranspose: 0,
        };
        const inner = new Set([...consts, ...(a.g!.initializer ?? []).map((t) => t.name ?? "")]);
        try {
          addNodes(a.g!.node ?? [], own, inner, shapeOf);
        } catch (e) {
          if (!(e instanceof PruneError)) throw e;
          return undefined;
        }
        return own;
      }).filter((x) => x) as MacBreakdown[];
      const sum = (x: MacBreakdown) => x.matmul + x.attention + x.gemm + x.conv + x.convTranspose;
      const largest = branches.sort((x, y) => sum(y) - sum(x))[0];
      if (largest) {
        for (const k of ["matmul", "attention", "gemm", "conv", "convTranspose"] as const) {
          b[k] += largest[k];
        }
      }
      continue;
    }
    const domain = node.domain ?? "";
    const op = node.opType ?? "";
    const ins = node.input ?? [];
    const std = domain === "" || domain === "ai.onnx";
    if (
      (std && (op === "MatMul" || op === "MatMulInteger" || op === "QLinearMatMul")) ||
      (domain === "com.microsoft" && QUANTIZED_MATMULS.has(op))
    ) {
      const [a, w] = op === "QLinearMatMul" ? [ins[0], ins[3]] : [ins[0], ins[1]];
      const aShape = shapeOf(node, a);
      const out = shapeOf(node, node.output?.[0]);
      let k = aShape[aShape.length - 1] ?? 1;
      if (op === "FusedMatMul" && attrInt(node, "transA", 0) && aShape.length >= 2) {
        k = aShape[aShape.length - 2];
      }
      const macs = numel(out) * k;
      if (consts.has(a) || consts.has(w)) b.matmul += macs;
      else b.attention += macs;
    } else if (std && op === "Gemm") {
      const aShape = shapeOf(node, ins[0]);
      const out = shapeOf(node, node.output?.[0]);
      const k = attrInt(node, "transA", 0) ? aShape[0] : aShape[1];
      b.gemm += numel(out) * k;
    } else if (std && (op === "Conv" || op === "ConvInteger" || op === "QLinearConv")) {
      const w = shapeOf(node, op === "QLinearConv" ? ins[3] : ins[1]);
      const out = shapeOf(node, node.output?.[0]);
      b.conv += numel(out) * numel(w.slice(1));
    } else if (domain === "com.microsoft" && FUSED_ATTENTION.has(op)) {
      const m = fusedAttentionMacs(node, shapeOf);
      b.matmul += m.projection;
      b.attention += m.products;
    } else if (std && op === "ConvTranspose") {
      const x = shapeOf(node, ins[0]);
      const w = shapeOf(node, ins[1]);
      b.convTranspose += numel(x) * numel(w.slice(1));
    }
  }
}

/**
 * Multiply-accumulates of `model` at batch 1: MatMul (attention products included unless
 * `{ attention: false }`), Gemm, Conv (groups honoured) and ConvTranspose. See the module doc
 * for the convention and how it differs from Torch-Pruning's counter. The shapes come from
 * {@link tensorShapes}.
 */
export function countMacs(model: ModelProto, shapes: ShapeMap, options: MacOptions = {}): number {
  const b = macsBreakdown(model, shapes);
  return options.attention === false ? b.total - b.attention : b.total;
}

/** Parameters and MACs of a model (one onnxruntime run for the shapes). */
export async function measureModel(
  model: ModelProto,
  options: ShapeOptions & MacOptions = {},
): Promise<{ params: number; macs: number }> {
  const shapes = await tensorShapes(model, options);
  return { params: countParams(model), macs: countMacs(model, shapes, options) };
}
