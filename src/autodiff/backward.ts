/**
 * Reverse-mode differentiation of an ONNX inference graph, written as ONNX: the backward nodes
 * are appended to a copy of the graph, so onnxruntime computes gradients without PyTorch or a
 * training build. Two uses: the gradient of the cross-entropy on the model's first output with
 * respect to chosen activation tensors (the gates of first-order pruning criteria,
 * {@link buildGradientModel}), and the gradient of any loss on an output with respect to the
 * weights (distillation, {@link buildWeightGradientModel}: the weights become graph inputs, so
 * one session serves every training step).
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import { onnx } from "../onnx/proto.ts";
import type { ModelProto, TensorProto, ValueInfoProto } from "../onnx/proto.ts";
import { attr, attrInt, attrInts, Graph, type GraphProto, type NodeProto } from "../graph/graph.ts";
import { isClassifierOutput } from "../graph/output_kind.ts";
import type { ProbedTensor } from "../runtime/probe.ts";
import { tensorDims } from "../onnx/tensor.ts";

/** Ops whose outputs carry no gradient (integer, boolean or piecewise-constant results). */
const STOP = new Set([
  "Shape",
  "Size",
  "ArgMax",
  "ArgMin",
  "Equal",
  "Less",
  "Greater",
  "LessOrEqual",
  "GreaterOrEqual",
  "Not",
  "And",
  "Or",
  "Xor",
  "IsNaN",
  "IsInf",
  "NonZero",
  "ConstantOfShape",
  "Range",
  "Floor",
  "Ceil",
  "Round",
  "Sign",
  "Constant",
  "EyeLike",
  "RandomNormalLike",
  "RandomUniformLike",
]);

/** Inputs through which each supported op passes gradient (other inputs are data-independent). */
const DIFFERENTIABLE: Record<string, number[]> = {
  Identity: [0],
  Dropout: [0],
  Cast: [0],
  Add: [0, 1],
  Sub: [0, 1],
  Mul: [0, 1],
  Div: [0, 1],
  Pow: [0],
  Sqrt: [0],
  Reciprocal: [0],
  Neg: [0],
  Exp: [0],
  Tanh: [0],
  Sigmoid: [0],
  Relu: [0],
  Erf: [0],
  Gelu: [0],
  Softmax: [0],
  LayerNormalization: [0, 1, 2],
  Conv: [0, 1, 2],
  ReduceMean: [0],
  ReduceSum: [0],
  MatMul: [0, 1],
  Gemm: [0, 1, 2],
  Reshape: [0],
  Flatten: [0],
  Squeeze: [0],
  Unsqueeze: [0],
  Transpose: [0],
  Expand: [0],
  Concat: [],
  Split: [0],
  Slice: [0],
  Gather: [0],
  Where: [1, 2],
  Pad: [0],
};

const FLOAT_TYPES = new Set([1, 10, 11, 16]);

/** The backward graph and where its results are. */
export interface GradientModel {
  model: ModelProto;
  /**
   * Per requested tensor of shape [batch, …, C]: the graph output holding Σ x·∂L/∂x over every
   * axis but the first and the last, shape [batch, C] — each sample's gradient of a gate on
   * each channel. A tensor whose first axis is not the batch (sequence-first layouts) is summed
   * over all rows: [1, C], `perSample` false. Tensors the loss does not depend on are absent.
   */
  gates: Map<string, { output: string; perSample: boolean }>;
  /** Whether the loss is the cross-entropy of a classifier (else a random projection). */
  classifier: boolean;
}

/**
 * Appends to a copy of `model` the backward pass of a loss on its first output z and exposes the
 * gate gradients of `tensors`. For a classifier (z: [batch, classes]) the loss is
 * Σ_samples CE(softmax(z), y), y the model's own top-1 prediction (or the labels fed as
 * `labelsInput`, int64 [batch], when given). For any other output (embeddings, hidden states) it
 * is εᵀz with ε ~ N(0, I) drawn afresh per run: the squares of its gate gradients average to the
 * diagonal of JᵀJ — the curvature of the squared distance to the original output, which is zero
 * there — so Fisher-type criteria need no labels (its first-order sums average to zero).
 * `shapes` are dims probed at batch size `batch` (above 1, so that broadcast batch axes are told
 * apart from real ones).
 */
export function buildGradientModel(
  model: ModelProto,
  shapes: Map<string, ProbedTensor>,
  tensors: string[],
  options: { batch: number; labelsInput?: string },
): GradientModel {
  const graph = new Graph(model.graph as GraphProto);
  const opset = Number(
    (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx")?.version ?? 0,
  );
  if (opset < 13) {
    throw new PruneError(
      "unsupported-graph",
      `first-order criteria need opset 13 or later (the model imports opset ${opset})`,
    );
  }
  const b = new Backward(graph, shapes, opset);
  const loss = (model.graph!.output ?? [])[0]?.name ?? "";
  const dims = shapes.get(loss)?.dims;
  if (!dims) {
    throw new PruneError("unsupported-graph", `the first graph output "${loss}" has no shape`);
  }
  const classifier = isClassifierOutput(model, dims);
  if (!classifier && options.labelsInput) {
    throw new PruneError(
      "unsupported-graph",
      `labels need a classifier: the first graph output "${loss}" should be [batch, classes], ` +
        `it is [${dims.join(", ")}]`,
    );
  }
  const active = b.activeFrom(tensors);
  if (!active.has(loss)) return { model, gates: new Map(), classifier };
  if (classifier) b.seedCrossEntropy(loss, options.labelsInput);
  else b.seedGaussian(loss);
  b.propagate(active);

  const gates: GradientModel["gates"] = new Map();
  const outputs = [...(model.graph!.output ?? [])];
  for (const t of tensors) {
    const g = b.gradient(t);
    const dims = shapes.get(t)?.dims;
    if (!g || !dims || dims.length < 2) continue;
    let product = b.op("Mul", [t, g]);
    const perSample = dims[0] === options.batch;
    if (dims.length > 2 || !perSample) {
      const rows = b.constInts([perSample ? 0 : 1, -1, dims[dims.length - 1]]);
      product = b.op("ReduceSum", [b.op("Reshape", [product, rows]), b.constInts([1])], {
        keepdims: 0,
      });
    }
    const name = b.op("Identity", [product]);
    gates.set(t, { output: name, perSample });
    outputs.push(onnx.ValueInfoProto.create({ name }));
  }
  const copy = onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({
      ...model.graph,
      node: [...(model.graph!.node ?? []), ...b.nodes],
      initializer: [...(model.graph!.initializer ?? []), ...b.initializers],
      output: outputs,
    }),
  });
  return { model: copy, gates, classifier };
}

/** What a loss seed may append to the backward graph. */
export interface GradientSeed {
  /** Appends a node; returns its (fresh) output name. */
  op(opType: string, input: string[], attrs?: Record<string, AttrValue>): string;
  /** A float32 scalar constant. */
  constFloat(value: number): string;
  /** An int64 constant (a scalar with `scalar`). */
  constInts(values: number[], scalar?: boolean): string;
}

/** The forward and backward graph of a loss, with the weights as graph inputs. */
export interface WeightGradientModel {
  /** Forward + backward. Its inputs: the model's, the trained weights (by their names, float32)
   * and the seed's extra inputs; its outputs: the loss's output, then one gradient per weight. */
  model: ModelProto;
  /** Trained weight → the output holding ∂L/∂weight (same shape). */
  gradients: Map<string, string>;
  /** Candidates left out, each with the reason. */
  frozen: { name: string; reason: string }[];
}

/**
 * Appends to a copy of `model` the backward pass of a loss on the tensor `output` and exposes the
 * gradient of every weight in `candidates` (float32 initializers) that reaches it. `seed`
 * appends ∂L/∂output and returns its name; it may read the graph inputs in `inputs` (teacher
 * outputs, labels). A weight whose gradient would flow through a node without a rule (a fused
 * op, a grouped convolution) is frozen, with the node named, and the rest is built again; with
 * no weight left, the error names the node. `shapes` are dims probed at a batch size above 1.
 */
export function buildWeightGradientModel(
  model: ModelProto,
  shapes: Map<string, ProbedTensor>,
  options: {
    candidates: string[];
    output: string;
    inputs: ValueInfoProto[];
    seed: (b: GradientSeed, output: string) => string;
    /** Further loss terms on other tensors (hidden states): each seed appends ∂L/∂tensor. */
    also?: { tensor: string; seed: (b: GradientSeed, tensor: string) => string }[];
  },
): WeightGradientModel {
  const graph = new Graph(model.graph as GraphProto);
  const opset = Number(
    (model.opsetImport ?? []).find((o) => !o.domain || o.domain === "ai.onnx")?.version ?? 0,
  );
  if (opset < 13) {
    throw new PruneError(
      "unsupported-graph",
      `training needs opset 13 or later (the model imports opset ${opset})`,
    );
  }
  const frozen: WeightGradientModel["frozen"] = [];
  let trainable = options.candidates;
  for (;;) {
    const b = new Backward(graph, shapes, opset);
    const active = b.activeFrom(trainable);
    const targets = new Set([options.output, ...(options.also ?? []).map((a) => a.tensor)]);
    const reaching = trainable.filter((w) => reachesOutput(graph, w, targets, active));
    for (const w of trainable) {
      if (!reaching.includes(w)) frozen.push({ name: w, reason: "does not reach the output" });
    }
    trainable = reaching;
    if (trainable.length === 0) {
      throw new PruneError(
        "unsupported-graph",
        `no weight can be trained: ${frozen[0]?.reason ?? "the model has no float weights"}`,
      );
    }
    b.add(options.output, options.seed(b, options.output));
    for (const { tensor, seed } of options.also ?? []) b.add(tensor, seed(b, tensor));
    try {
      b.propagate(b.activeFrom(trainable));
    } catch (e) {
      if (!(e instanceof Undifferentiable)) throw e;
      const node = e.node;
      const upstream = weightsAbove(graph, node, new Set(trainable));
      if (upstream.size === 0) throw e;
      const reason = `no gradient through ${node.opType} node "${node.name}"` +
        (e.why ? ` (${e.why})` : "");
      for (const w of upstream) frozen.push({ name: w, reason });
      trainable = trainable.filter((w) => !upstream.has(w));
      if (trainable.length === 0) {
        throw new PruneError("unsupported-graph", `no weight can be trained: ${reason}`);
      }
      continue;
    }
    const gradients = new Map<string, string>();
    const outputs = [onnx.ValueInfoProto.create({ name: options.output })];
    for (const w of trainable) {
      const g = b.gradient(w);
      if (!g) continue;
      const name = b.op("Identity", [g]);
      gradients.set(w, name);
      outputs.push(onnx.ValueInfoProto.create({ name }));
    }
    const base = weightsAsInputs(model, new Set(gradients.keys())).graph!;
    return {
      model: onnx.ModelProto.create({
        ...model,
        graph: onnx.GraphProto.create({
          ...base,
          node: [...(base.node ?? []), ...b.nodes],
          initializer: [...(base.initializer ?? []), ...b.initializers],
          input: [...(base.input ?? []), ...options.inputs],
          output: outputs,
        }),
      }),
      gradients,
      frozen,
    };
  }
}

/**
 * A copy of `model` whose initializers named in `weights` are graph inputs instead (float32, of
 * their dims): one session runs with any values of them.
 */
export function weightsAsInputs(model: ModelProto, weights: Set<string>): ModelProto {
  const inits = model.graph!.initializer ?? [];
  const inputs = inits.filter((t) => weights.has(t.name ?? "")).map((t) =>
    onnx.ValueInfoProto.create({
      name: t.name,
      type: {
        tensorType: {
          elemType: 1,
          shape: { dim: tensorDims(t).map((d) => ({ dimValue: d })) },
        },
      },
    })
  );
  return onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({
      ...model.graph,
      initializer: inits.filter((t) => !weights.has(t.name ?? "")),
      input: [...(model.graph!.input ?? []), ...inputs],
    }),
  });
}

/** Whether one of `outputs` is computed from `weight` through differentiable inputs. */
function reachesOutput(graph: Graph, weight: string, outputs: Set<string>, active: Set<string>) {
  const seen = new Set([weight]);
  const todo = [weight];
  while (todo.length) {
    const t = todo.pop()!;
    if (outputs.has(t)) return true;
    for (const use of graph.consumers(t)) {
      for (const o of use.node.output) {
        if (o && active.has(o) && !seen.has(o)) {
          seen.add(o);
          todo.push(o);
        }
      }
    }
  }
  return false;
}

/** The weights among `weights` that `node`'s inputs are computed from. */
function weightsAbove(graph: Graph, node: NodeProto, weights: Set<string>): Set<string> {
  const out = new Set<string>();
  const seen = new Set<string>();
  const todo = node.input.filter((x) => x);
  while (todo.length) {
    const t = todo.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    if (weights.has(t)) out.add(t);
    const p = graph.producer(t);
    if (p) todo.push(...p.input.filter((x) => x));
  }
  return out;
}

type AttrValue = number | number[] | string;
/** Attributes ONNX types as float, written as float even when the value is whole. */
const FLOAT_ATTRIBUTES = new Set(["alpha", "beta", "epsilon", "seed", "mean", "scale"]);

/** A node the builder has no gradient rule for (or not for the inputs asked): the weight
 * gradient builder freezes the weights upstream of it and tries again. */
class Undifferentiable extends PruneError {
  constructor(readonly node: NodeProto, readonly why: string, message: string) {
    super("unsupported-graph", message);
  }
}

/** Tensors whose values depend on the values of graph inputs (not only on their shapes). */
function valueDependent(graph: Graph): Set<string> {
  const out = new Set<string>();
  for (const v of graph.proto.input) if (!graph.initializer(v.name ?? "")) out.add(v.name ?? "");
  for (const node of graph.nodes) {
    if (node.opType === "Shape" || node.opType === "Size") continue;
    if (node.input.some((x) => out.has(x))) { for (const o of node.output) if (o) out.add(o); }
  }
  return out;
}

class Backward {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  /** Gradient contributions per forward tensor, summed when first read. */
  readonly #parts = new Map<string, string[]>();
  readonly #summed = new Map<string, string>();
  #counter = 0;
  /** The forward node being differentiated, named in the backward nodes' names. */
  #context = "loss";
  /** Tensors computed from the inputs' values: never read as constants, even when probed. */
  readonly runtime: Set<string>;

  constructor(
    readonly graph: Graph,
    readonly shapes: Map<string, ProbedTensor>,
    readonly opset: number,
  ) {
    this.runtime = valueDependent(graph);
  }

  fresh(hint: string): string {
    return `prune_vit_grad_${this.#counter++}_${hint}`;
  }

  op(opType: string, input: string[], attrs: Record<string, AttrValue> = {}) {
    const output = [this.fresh(opType.toLowerCase())];
    const attribute = Object.entries(attrs).map(([name, v]) =>
      typeof v === "string"
        ? onnx.AttributeProto.create({ name, type: 3, s: new TextEncoder().encode(v) })
        : Array.isArray(v)
        ? onnx.AttributeProto.create({ name, type: 7, ints: v })
        : Number.isInteger(v) && !FLOAT_ATTRIBUTES.has(name)
        ? onnx.AttributeProto.create({ name, type: 2, i: v })
        : onnx.AttributeProto.create({ name, type: 1, f: v })
    );
    const name = `${this.#context}/grad/${opType}_${this.#counter++}`;
    this.nodes.push(onnx.NodeProto.create({ name, opType, input, output, attribute }));
    return output[0];
  }

  multi(opType: string, input: string[], count: number, attrs: Record<string, AttrValue> = {}) {
    const output = Array.from({ length: count }, () => this.fresh(opType.toLowerCase()));
    const attribute = Object.entries(attrs).map(([name, v]) =>
      Array.isArray(v)
        ? onnx.AttributeProto.create({ name, type: 7, ints: v })
        : onnx.AttributeProto.create({ name, type: 2, i: v as number })
    );
    this.nodes.push(onnx.NodeProto.create({ opType, input, output, attribute }));
    return output;
  }

  constInts(values: number[], scalar = false): string {
    const name = this.fresh("ints");
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dataType: 7,
        dims: scalar ? [] : [values.length],
        int64Data: values,
      }),
    );
    return name;
  }

  constFloat(value: number): string {
    const name = this.fresh("float");
    this.initializers.push(
      onnx.TensorProto.create({ name, dataType: 1, dims: [], floatData: [value] }),
    );
    return name;
  }

  dims(name: string, node: NodeProto): number[] {
    const constant = this.graph.constant(name)?.tensor;
    const d = this.shapes.get(name)?.dims ?? (constant ? tensorDims(constant) : undefined);
    if (!d) {
      throw new PruneError("unsupported-graph", `no shape for "${name}" (node "${node.name}")`);
    }
    return d;
  }

  /** Integer values of a constant or probed small tensor (axes, starts, pads, indices). */
  ints(name: string, node: NodeProto): number[] {
    const v = this.constantInts(name);
    if (!v) {
      throw new PruneError(
        "unsupported-graph",
        `cannot differentiate through ${node.opType} node "${node.name}": input "${name}" is ` +
          `not a constant`,
      );
    }
    return v;
  }

  /** Values of a tensor that is the same at every run: a constant, or probed and computed from
   * shapes only. */
  constantInts(name: string): number[] | undefined {
    return this.graph.constantInts(name) ??
      (this.runtime.has(name) ? undefined : this.shapes.get(name)?.values);
  }

  /** Forward tensors reachable from `tensors` through differentiable inputs. */
  activeFrom(tensors: string[]): Set<string> {
    const active = new Set(tensors);
    for (const node of this.graph.nodes) {
      if (STOP.has(node.opType)) continue;
      const through = node.opType === "Concat"
        ? node.input.map((_, i) => i)
        : DIFFERENTIABLE[node.opType];
      const touched = node.input.some((x, i) => active.has(x) && (!through || through.includes(i)));
      if (!touched) continue;
      if (node.opType === "Cast" && !FLOAT_TYPES.has(attrInt(node, "to", 0))) continue;
      for (const o of node.output) if (o) active.add(o);
    }
    return active;
  }

  seedCrossEntropy(logits: string, labels?: string) {
    const classes = this.op("Gather", [this.op("Shape", [logits]), this.constInts([1], true)]);
    const target = labels ?? this.op("ArgMax", [logits], { axis: -1, keepdims: 0 });
    const onOff = this.fresh("onoff");
    this.initializers.push(
      onnx.TensorProto.create({ name: onOff, dataType: 1, dims: [2], floatData: [0, 1] }),
    );
    const oneHot = this.op("OneHot", [target, classes, onOff], { axis: -1 });
    this.add(logits, this.op("Sub", [this.op("Softmax", [logits], { axis: -1 }), oneHot]));
  }

  /** ∂(εᵀz)/∂z = ε ~ N(0, 1), float32 like the graphs the criteria read; seeded, so a session
   * draws the same sequence on every run of the same data. */
  seedGaussian(output: string) {
    this.add(output, this.op("RandomNormalLike", [output], { dtype: 1, seed: 1 }));
  }

  add(tensor: string, grad: string) {
    let parts = this.#parts.get(tensor);
    if (!parts) this.#parts.set(tensor, parts = []);
    parts.push(grad);
  }

  gradient(tensor: string): string | undefined {
    const done = this.#summed.get(tensor);
    if (done) return done;
    const parts = this.#parts.get(tensor);
    if (!parts?.length) return undefined;
    const g = parts.length === 1 ? parts[0] : this.op("Sum", parts);
    this.#summed.set(tensor, g);
    return g;
  }

  /** Walks the forward nodes last to first, pushing gradients to their active inputs. */
  propagate(active: Set<string>) {
    for (let i = this.graph.nodes.length - 1; i >= 0; i--) {
      const node = this.graph.nodes[i];
      if (STOP.has(node.opType)) continue;
      const grads = node.output.map((o) => (o ? this.gradient(o) : undefined));
      if (grads.every((g) => !g)) continue;
      const wanted = node.input.map((x) => !!x && active.has(x));
      if (!wanted.some((w) => w)) continue;
      this.#context = node.name || node.output[0];
      this.rule(node, grads, wanted);
    }
  }

  /** Sums a gradient of `outShape` down to the broadcast input `input`. */
  unbroadcast(
    grad: string,
    input: string,
    output: string | number[],
    node: NodeProto,
  ): string {
    const inDims = this.dims(input, node);
    const outDims = typeof output === "string" ? this.dims(output, node) : output;
    const lead = outDims.length - inDims.length;
    const axes: number[] = [];
    outDims.forEach((d, i) => {
      if (i < lead || (inDims[i - lead] === 1 && d !== 1)) axes.push(i);
    });
    if (axes.length === 0 && lead === 0) return grad;
    const reduced = axes.length
      ? this.op("ReduceSum", [grad, this.constInts(axes)], { keepdims: 1 })
      : grad;
    return this.op("Reshape", [reduced, this.op("Shape", [input])]);
  }

  reduce(kind: "ReduceSum" | "ReduceMean", x: string, axes: number[]): string {
    if (kind === "ReduceSum" || this.opset >= 18) {
      return this.op(kind, [x, this.constInts(axes)], { keepdims: 1 });
    }
    return this.op(kind, [x], { axes, keepdims: 1 });
  }

  rule(node: NodeProto, grads: (string | undefined)[], wanted: boolean[]) {
    const [x, y] = [node.input, node.output];
    const dy = grads[0];
    const push = (i: number, g: () => string) => {
      if (wanted[i]) this.add(x[i], g());
    };
    const unsupported = (why = ""): never => {
      throw new Undifferentiable(
        node,
        why,
        `first-order criteria cannot differentiate through ${node.opType} node "${node.name}"` +
          (why ? ` (${why})` : ""),
      );
    };
    if (!(node.opType in DIFFERENTIABLE)) unsupported("op not supported by the gradient builder");
    if (!dy && node.opType !== "Split") return;
    const g = dy!;
    switch (node.opType) {
      case "Identity":
      case "Dropout":
        return push(0, () => g);
      case "Cast":
        return push(0, () => this.op("Cast", [g], { to: 1 }));
      case "Add":
        push(0, () => this.unbroadcast(g, x[0], y[0], node));
        return push(1, () => this.unbroadcast(g, x[1], y[0], node));
      case "Sub":
        push(0, () => this.unbroadcast(g, x[0], y[0], node));
        return push(1, () => this.unbroadcast(this.op("Neg", [g]), x[1], y[0], node));
      case "Mul":
        push(0, () => this.unbroadcast(this.op("Mul", [g, x[1]]), x[0], y[0], node));
        return push(1, () => this.unbroadcast(this.op("Mul", [g, x[0]]), x[1], y[0], node));
      case "Div":
        push(0, () => this.unbroadcast(this.op("Div", [g, x[1]]), x[0], y[0], node));
        return push(1, () => {
          const d = this.op("Neg", [this.op("Div", [this.op("Mul", [g, y[0]]), x[1]])]);
          return this.unbroadcast(d, x[1], y[0], node);
        });
      case "Pow": {
        const p = this.op("Cast", [x[1]], { to: 1 });
        const lower = this.op("Pow", [x[0], this.op("Sub", [p, this.constFloat(1)])]);
        return push(0, () => this.op("Mul", [g, this.op("Mul", [p, lower])]));
      }
      case "Sqrt":
        return push(0, () => this.op("Div", [this.op("Mul", [g, this.constFloat(0.5)]), y[0]]));
      case "Reciprocal":
        return push(0, () => this.op("Neg", [this.op("Mul", [g, this.op("Mul", [y[0], y[0]])])]));
      case "Neg":
        return push(0, () => this.op("Neg", [g]));
      case "Exp":
        return push(0, () => this.op("Mul", [g, y[0]]));
      case "Tanh": {
        const one = this.constFloat(1);
        return push(
          0,
          () => this.op("Mul", [g, this.op("Sub", [one, this.op("Mul", [y[0], y[0]])])]),
        );
      }
      case "Sigmoid": {
        const one = this.constFloat(1);
        return push(
          0,
          () => this.op("Mul", [g, this.op("Mul", [y[0], this.op("Sub", [one, y[0]])])]),
        );
      }
      case "Relu":
        return push(0, () => {
          const positive = this.op("Greater", [x[0], this.constFloat(0)]);
          return this.op("Where", [positive, g, this.constFloat(0)]);
        });
      case "Erf":
        return push(0, () => {
          const e = this.op("Exp", [this.op("Neg", [this.op("Mul", [x[0], x[0]])])]);
          return this.op("Mul", [g, this.op("Mul", [e, this.constFloat(2 / Math.sqrt(Math.PI))])]);
        });
      case "Gelu": {
        if ((attr(node, "approximate") ?? "none") === "tanh") {
          return push(0, () => {
            // y = x/2·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³)
            const c = Math.sqrt(2 / Math.PI);
            const x2 = this.op("Mul", [x[0], x[0]]);
            const inner = this.op("Add", [
              this.constFloat(1),
              this.op("Mul", [x2, this.constFloat(0.044715)]),
            ]);
            const t = this.op("Tanh", [
              this.op("Mul", [this.op("Mul", [x[0], inner]), this.constFloat(c)]),
            ]);
            const du = this.op("Add", [
              this.constFloat(c),
              this.op("Mul", [x2, this.constFloat(3 * 0.044715 * c)]),
            ]);
            const one = this.constFloat(1);
            const left = this.op("Add", [one, t]);
            const right = this.op("Mul", [
              this.op("Mul", [x[0], this.op("Sub", [one, this.op("Mul", [t, t])])]),
              du,
            ]);
            const dydx = this.op("Mul", [this.op("Add", [left, right]), this.constFloat(0.5)]);
            return this.op("Mul", [g, dydx]);
          });
        }
        return push(0, () => {
          // Φ(x) + x·φ(x)
          const cdf = this.op("Mul", [
            this.op("Add", [
              this.constFloat(1),
              this.op("Erf", [this.op("Mul", [x[0], this.constFloat(Math.SQRT1_2)])]),
            ]),
            this.constFloat(0.5),
          ]);
          const pdf = this.op("Mul", [
            this.op("Exp", [
              this.op("Mul", [this.op("Mul", [x[0], x[0]]), this.constFloat(-0.5)]),
            ]),
            this.constFloat(1 / Math.sqrt(2 * Math.PI)),
          ]);
          return this.op("Mul", [g, this.op("Add", [cdf, this.op("Mul", [x[0], pdf])])]);
        });
      }
      case "Softmax": {
        const rank = this.dims(x[0], node).length;
        const axis = attrInt(node, "axis", this.opset >= 13 ? -1 : 1);
        if (this.opset < 13 && (axis + rank) % rank !== rank - 1) {
          unsupported("softmax over several axes before opset 13");
        }
        return push(0, () => {
          const dot = this.reduce("ReduceSum", this.op("Mul", [g, y[0]]), [axis]);
          return this.op("Mul", [y[0], this.op("Sub", [g, dot])]);
        });
      }
      case "LayerNormalization": {
        const rank = this.dims(x[0], node).length;
        const axis = attrInt(node, "axis", -1);
        if ((axis + rank) % rank !== rank - 1) unsupported("normalises more than the last axis");
        const eps = attr(node, "epsilon");
        const mean = (t: string) => this.reduce("ReduceMean", t, [-1]);
        let parts: { rstd: string; xhat: string } | undefined;
        const normalised = () => {
          if (parts) return parts;
          const centred = this.op("Sub", [x[0], mean(x[0])]);
          const variance = mean(this.op("Mul", [centred, centred]));
          const eps0 = this.constFloat(typeof eps === "number" ? eps : 1e-5);
          const rstd = this.op("Reciprocal", [this.op("Sqrt", [this.op("Add", [variance, eps0])])]);
          return parts = { rstd, xhat: this.op("Mul", [centred, rstd]) };
        };
        push(0, () => {
          const { rstd, xhat } = normalised();
          const gh = x[1] ? this.op("Mul", [g, x[1]]) : g;
          const inner = this.op("Sub", [
            this.op("Sub", [gh, mean(gh)]),
            this.op("Mul", [xhat, mean(this.op("Mul", [gh, xhat]))]),
          ]);
          return this.op("Mul", [rstd, inner]);
        });
        // Scale and bias: summed over every row.
        const rows = (t: string, p: string) => {
          const width = this.dims(x[0], node)[rank - 1];
          const flat = this.op("Reshape", [t, this.constInts([-1, width])]);
          const sum = this.op("ReduceSum", [flat, this.constInts([0])], { keepdims: 0 });
          return this.op("Reshape", [sum, this.op("Shape", [p])]);
        };
        push(1, () => rows(this.op("Mul", [g, normalised().xhat]), x[1]));
        return push(2, () => rows(g, x[2]));
      }
      case "ReduceMean":
      case "ReduceSum": {
        const keep = attrInt(node, "keepdims", 1);
        const axes = node.opType === "ReduceSum" || this.opset >= 18
          ? (x[1] ? this.ints(x[1], node) : undefined)
          : attrInts(node, "axes");
        return push(0, () => {
          let t = g;
          if (!keep && axes) t = this.op("Unsqueeze", [t, this.constInts(axes)]);
          if (!keep && !axes) {
            const rank = this.dims(x[0], node).length;
            t = this.op("Reshape", [t, this.constInts(new Array(rank).fill(1))]);
          }
          t = this.op("Expand", [t, this.op("Shape", [x[0]])]);
          if (node.opType === "ReduceSum") return t;
          const n = this.op("Cast", [
            this.op("Div", [this.op("Size", [x[0]]), this.op("Size", [y[0]])]),
          ], { to: 1 });
          return this.op("Div", [t, n]);
        });
      }
      case "MatMul": {
        const [ra, rb] = [this.dims(x[0], node).length, this.dims(x[1], node).length];
        if (ra < 2 || rb < 2) unsupported("a 1-D operand");
        const swap = (r: number) => [...Array(r - 2).keys(), r - 1, r - 2];
        // The products below have Y's batch axes and the operand's matrix axes.
        const batch = this.dims(y[0], node).slice(0, -2);
        const full = (t: string) => [...batch, ...this.dims(t, node).slice(-2)];
        push(0, () => {
          const bt = this.op("Transpose", [x[1]], { perm: swap(rb) });
          return this.unbroadcast(this.op("MatMul", [g, bt]), x[0], full(x[0]), node);
        });
        return push(1, () => {
          if (rb === 2 && ra > 2) {
            // A weight read by every row: one product over the rows, no per-batch partials.
            const [k, n] = this.dims(x[1], node);
            const a = this.op("Reshape", [x[0], this.constInts([-1, k])]);
            const b = this.op("Reshape", [g, this.constInts([-1, n])]);
            return this.op("Gemm", [a, b], { transA: 1 });
          }
          const at = this.op("Transpose", [x[0]], { perm: swap(ra) });
          return this.unbroadcast(this.op("MatMul", [at, g]), x[1], full(x[1]), node);
        });
      }
      case "Conv": {
        // Weight and bias only (a patch embedding reads the images): ∂W is the convolution of
        // the input with ∂Y, batch and channel axes swapped, strides and dilations exchanged.
        if (wanted[0]) unsupported("the gradient of a convolution's input");
        const w = this.dims(x[1], node), rank = w.length, spatial = rank - 2;
        const autoPad = attr(node, "auto_pad") ?? "NOTSET";
        if (autoPad !== "NOTSET" && autoPad !== "VALID") unsupported(`auto_pad ${autoPad}`);
        if (attrInt(node, "group", 1) !== 1) unsupported("a grouped convolution");
        const ones = new Array<number>(spatial).fill(1);
        const strides = attrInts(node, "strides") ?? ones;
        const dilations = attrInts(node, "dilations") ?? ones;
        const pads = autoPad === "VALID"
          ? new Array<number>(2 * spatial).fill(0)
          : attrInts(node, "pads") ?? new Array<number>(2 * spatial).fill(0);
        const perm = [1, 0, ...[...Array(spatial).keys()].map((i) => i + 2)];
        push(1, () => {
          const xt = this.op("Transpose", [x[0]], { perm });
          const gt = this.op("Transpose", [g], { perm });
          const full = this.op("Conv", [xt, gt], { strides: dilations, dilations: strides, pads });
          const kernel = this.op("Slice", [
            full,
            this.constInts(new Array<number>(spatial).fill(0)),
            this.constInts(w.slice(2)),
            this.constInts(perm.slice(2)),
          ]);
          return this.op("Transpose", [kernel], { perm });
        });
        return push(2, () => {
          const axes = [0, ...perm.slice(2)];
          return this.op("ReduceSum", [g, this.constInts(axes)], { keepdims: 0 });
        });
      }
      case "Gemm": {
        const alpha = attr(node, "alpha"), beta = attr(node, "beta");
        const ta = attrInt(node, "transA", 0), tb = attrInt(node, "transB", 0);
        const a = typeof alpha === "number" ? alpha : 1, bb = typeof beta === "number" ? beta : 1;
        push(0, () => {
          const d = this.op("Gemm", [g, x[1]], { alpha: a, transB: tb ? 0 : 1 });
          return ta ? this.op("Transpose", [d], { perm: [1, 0] }) : d;
        });
        push(1, () => {
          const d = this.op("Gemm", [x[0], g], { alpha: a, transA: ta ? 0 : 1 });
          return tb ? this.op("Transpose", [d], { perm: [1, 0] }) : d;
        });
        return push(
          2,
          () => this.unbroadcast(this.op("Mul", [g, this.constFloat(bb)]), x[2], y[0], node),
        );
      }
      case "Reshape":
      case "Flatten":
      case "Squeeze":
      case "Unsqueeze":
        return push(0, () => this.op("Reshape", [g, this.op("Shape", [x[0]])]));
      case "Transpose": {
        const rank = this.dims(x[0], node).length;
        const perm = attrInts(node, "perm") ?? [...Array(rank).keys()].reverse();
        const inverse = new Array<number>(rank);
        perm.forEach((p, i) => inverse[p] = i);
        return push(0, () => this.op("Transpose", [g], { perm: inverse }));
      }
      case "Expand":
        return push(0, () => this.unbroadcast(g, x[0], y[0], node));
      case "Where": {
        const zero = this.constFloat(0);
        push(1, () => this.unbroadcast(this.op("Where", [x[0], g, zero]), x[1], y[0], node));
        return push(2, () => this.unbroadcast(this.op("Where", [x[0], zero, g]), x[2], y[0], node));
      }
      case "Concat": {
        const rank = this.dims(y[0], node).length;
        const axis = (attrInt(node, "axis", 0) + rank) % rank;
        let offset = 0;
        x.forEach((input, i) => {
          const size = this.dims(input, node)[axis];
          const start = offset;
          offset += size;
          push(i, () =>
            this.op("Slice", [
              g,
              this.constInts([start]),
              this.constInts([start + size]),
              this.constInts([axis]),
            ]));
        });
        return;
      }
      case "Split": {
        const rank = this.dims(x[0], node).length;
        const axis = (attrInt(node, "axis", 0) + rank) % rank;
        return push(0, () =>
          this.op(
            "Concat",
            y.map((o, i) => grads[i] ?? this.op("Mul", [o, this.constFloat(0)])),
            { axis },
          ));
      }
      case "Slice": {
        const inDims = this.dims(x[0], node), outDims = this.dims(y[0], node);
        const rank = inDims.length;
        const starts = this.ints(x[1], node);
        const axes = x[3] ? this.ints(x[3], node) : starts.map((_, i) => i);
        const steps = x[4] ? this.ints(x[4], node) : starts.map(() => 1);
        if (steps.some((s) => s !== 1)) unsupported("a step other than 1");
        const pads = new Array<number>(2 * rank).fill(0);
        axes.forEach((a0, i) => {
          const a = (a0 + rank) % rank;
          const s = starts[i] < 0 ? starts[i] + inDims[a] : starts[i];
          const begin = Math.min(Math.max(s, 0), inDims[a]);
          pads[a] = begin;
          pads[a + rank] = inDims[a] - begin - outDims[a];
        });
        return push(0, () => this.op("Pad", [g, this.constInts(pads)]));
      }
      case "Gather": {
        const inDims = this.dims(x[0], node), rank = inDims.length;
        const axis = (attrInt(node, "axis", 0) + rank) % rank;
        const known = this.constantInts(x[1])?.map((i) => i < 0 ? i + inDims[axis] : i);
        const indexRank = (this.shapes.get(x[1])?.dims ??
          this.graph.constant(x[1])?.tensor.dims ?? [1]).length;
        if (!known || known.some((v, i) => v !== known[0] + i) || indexRank > 1) {
          // A lookup table read at indices (token ids, a relative-position index): the rows
          // read are summed back into the table.
          if (axis !== 0) unsupported("indices that are not one range, off axis 0");
          if (this.opset < 16) unsupported("indices that are not one range, before opset 16");
          return push(0, () => {
            const zeros = this.op("Mul", [x[0], this.constFloat(0)]);
            const at = this.op("Unsqueeze", [
              this.op("Cast", [x[1]], { to: 7 }),
              this.constInts([-1]),
            ]);
            return this.op("ScatterND", [zeros, at, g], { reduction: "add" });
          });
        }
        const indices = known;
        const scalar = indexRank === 0;
        const pads = new Array<number>(2 * rank).fill(0);
        pads[axis] = indices[0];
        pads[axis + rank] = inDims[axis] - indices[0] - indices.length;
        return push(0, () => {
          const t = scalar ? this.op("Unsqueeze", [g, this.constInts([axis])]) : g;
          return this.op("Pad", [t, this.constInts(pads)]);
        });
      }
      case "Pad": {
        const mode = attr(node, "mode") ?? "constant";
        if (mode !== "constant") unsupported(`mode ${mode}`);
        const inDims = this.dims(x[0], node), rank = inDims.length;
        const pads = this.ints(x[1], node);
        if (x[3] || pads.some((p) => p < 0)) unsupported("axes or negative pads");
        // Only the padded axes are cut back (the others, the batch among them, may change size).
        const axes = [...Array(rank).keys()].filter((i) => pads[i] || pads[i + rank]);
        return push(0, () =>
          axes.length === 0 ? g : this.op("Slice", [
            g,
            this.constInts(axes.map((i) => pads[i])),
            this.constInts(axes.map((i) => pads[i] + inDims[i])),
            this.constInts(axes),
          ]));
      }
    }
    unsupported();
  }
}
