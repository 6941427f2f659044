/**
 * Healing a pruned model by knowledge distillation: its weights are trained to match the
 * original model's outputs on the (unlabeled) calibration data. The original (the teacher) runs
 * once over the data; onnxruntime then runs the pruned model's forward and backward pass per step
 * (the backward graph from autodiff/backward.ts, the weights fed as graph inputs) and AdamW
 * updates float32 master weights. A held-out share of the calibration samples is scored every
 * few steps; the best weights seen are kept and training stops when they stop improving. The
 * same data, options and seed give the same model. Text models with an attention-mask input may
 * come in batches of any sequence length: every batch is padded to one length and padding tokens
 * are left out of the loss (see samples.ts).
 *
 * @module
 */
import { PruneError } from "../errors.ts";
import { onnx } from "../onnx/proto.ts";
import type { ModelProto, TensorProto } from "../onnx/proto.ts";
import { decodeModel, encodeModel } from "../onnx/model_io.ts";
import { withFloat32Io } from "../runtime/float32_io.ts";
import { float32ToTensorBytes, setTensorRawBytes, tensorDims } from "../onnx/tensor.ts";
import { tensorToFloat32 } from "../onnx/tensor.ts";
import { Graph, type GraphProto } from "../graph/graph.ts";
import { createSession, loadOrt, type OrtSession, type OrtTensor } from "../runtime/ort.ts";
import { probeTensors } from "../runtime/probe.ts";
import { buildWeightGradientModel, weightsAsInputs } from "../autodiff/backward.ts";
import { float32Model, hasHalfFloats } from "./float32.ts";
import { LOSS_KINDS, type LossKind, type LossSpec, lossSum, seedLoss } from "./loss.ts";
import { AdamW, learningRate } from "./adamw.ts";
import { halfToFloat32, SamplePool } from "./samples.ts";
import { blockOutputs } from "./hidden.ts";
import { isClassifierOutput } from "../graph/output_kind.ts";

export type { LossKind } from "./loss.ts";

/** Options of a distillation run (library: the `distill` option of a pruning run). */
export interface DistillOptions {
  /** Optimizer steps (one batch each). */
  steps: number;
  /** Peak learning rate of AdamW (after warm-up; cosine decay to 0). Default 5e-4. */
  lr?: number;
  /** Samples per step. Default 32. */
  batchSize?: number;
  /** Seed of the held-out split and the order of the batches. Default 0. */
  seed?: number;
  /** `kl` (classifier logits; the default for a [batch, classes] output), `cosine` (the default
   * for any other output: embeddings), `mse`, or `pooled` (the cosine of the mean over axis 1,
   * per sample: mean-pooled sentence embeddings). Each is a mean over the output's rows (vectors
   * along its last axis); for a text model's [batch, tokens, width] output, over the tokens its
   * attention mask keeps. */
  loss?: LossKind;
  /** Softmax temperature of `kl`. Default 2. */
  temperature?: number;
  /** Also match every transformer block's output (the residual stream after the block) to the
   * original's: the cosine per row (token) of each, averaged over the blocks, added to the loss
   * with weight `hiddenWeight`. Needs the residual width kept (no embedding pruning). The
   * held-out score reads the output's loss only. */
  hidden?: boolean;
  /** Weight of the block outputs' loss with `hidden`. Default 1. */
  hiddenWeight?: number;
  /** Also train the lookup tables read by token ids (a Gather whose indices are a graph input:
   * word and token-type embeddings). Default false: a step then reads them as they are — in a
   * text model the word table is often over half the weights, and its dense gradient and update
   * over half a step's work, for rows a batch barely touches. Tables looked up by position train
   * either way. */
  trainEmbeddings?: boolean;
  /** Decoupled weight decay of the matrices (MatMul, Gemm, Conv weights). Default 0.01. */
  weightDecay?: number;
  /** Warm-up steps. Default 5% of the steps. */
  warmup?: number;
  /** Share of the calibration samples held out for early stopping (0 to train on all).
   * Default 0.1, and at most 256 samples (their scores are run ten times in a run: a larger
   * split costs steps and tells early stopping no more). */
  heldOut?: number;
  /** Steps between two scores of the held-out split. Default: a tenth of the steps. */
  evalEvery?: number;
  /** Scores without improvement before training stops. Default 3. */
  patience?: number;
  /** One class label per calibration sample (in the order given): adds the cross-entropy to
   * `kl`, with weight `labelWeight`. */
  labels?: ArrayLike<number>;
  /** Share of the cross-entropy when labels are given. Default 0.5. */
  labelWeight?: number;
  /** Stop after this many seconds of training (the schedule still runs over `steps`; a
   * wall-clock stop is not reproducible). */
  maxSeconds?: number;
  /** Called after every step with the step, the steps planned and the training loss (a running
   * mean over about the last ten steps); a promise it returns is awaited (its time is not the
   * step's). */
  onProgress?: (step: number, steps: number, loss: number) => void | Promise<void>;
}

/** What a distillation run did. */
export interface DistillReport {
  /** The loss trained on. */
  loss: LossKind;
  /** The KL loss's temperature. */
  temperature?: number;
  /** Steps taken, and why training stopped. */
  steps: number;
  /** Why training stopped: the steps were done, the held-out loss stopped improving, or time. */
  stopped: "steps" | "early-stop" | "time";
  /** The step whose weights were kept (0: the model as pruned scored best). */
  bestStep: number;
  /** Calibration samples trained on and held out. */
  samples: { train: number; heldOut: number };
  /** Mean loss on the held-out split before and after (absent without a held-out split). */
  heldOut?: { before: number; after: number };
  /** Mean training loss over the first and the last twentieth of the steps. */
  train: { first: number; last: number };
  /** Weight tensors and parameters trained. */
  trained: { tensors: number; params: number };
  /** Float weights left as they were, each with the reason. */
  frozen: { name: string; reason: string }[];
  /** With `hidden`: the block outputs matched. */
  hidden?: string[];
  /** Wall time of the whole run. */
  seconds: number;
  /** Mean wall time of a training step (forward, backward, update). */
  msPerStep: number;
}

type Batches = AsyncIterable<Record<string, OrtTensor>> | Iterable<Record<string, OrtTensor>>;

/** The default held-out split's largest size (a tenth of the samples below that). */
const DEFAULT_HELD_OUT_MAX = 256;
const TEACHER = "prune_vit_teacher";
const LABELS = "prune_vit_labels";
const WEIGHTS = "prune_vit_row_weights";
const HIDDEN = "prune_vit_teacher_block_";

function checkOptions(o: DistillOptions) {
  const bad = (name: string, want: string, v: unknown) => {
    throw new PruneError("bad-option", `distill.${name} must be ${want}, got ${v}`);
  };
  const positiveInt = (name: keyof DistillOptions) => {
    const v = o[name];
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= 1)) {
      bad(name, "a positive integer", v);
    }
  };
  if (o.steps === undefined) bad("steps", "a positive integer", o.steps);
  positiveInt("steps");
  positiveInt("batchSize");
  positiveInt("evalEvery");
  positiveInt("patience");
  const positive = (name: keyof DistillOptions) => {
    const v = o[name] as number | undefined;
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) bad(name, "a positive number", v);
  };
  positive("lr");
  positive("temperature");
  positive("maxSeconds");
  positive("hiddenWeight");
  const share = (name: keyof DistillOptions, top: number) => {
    const v = o[name] as number | undefined;
    if (v !== undefined && !(Number.isFinite(v) && v >= 0 && v < top)) {
      bad(name, `in [0, ${top})`, v);
    }
  };
  share("heldOut", 1);
  share("weightDecay", 1);
  const alpha = o.labelWeight;
  if (alpha !== undefined && !(Number.isFinite(alpha) && alpha >= 0 && alpha <= 1)) {
    bad("labelWeight", "in [0, 1]", alpha);
  }
  if (o.warmup !== undefined && !(Number.isSafeInteger(o.warmup) && o.warmup >= 0)) {
    bad("warmup", "a whole number of steps", o.warmup);
  }
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) bad("seed", "an integer", o.seed);
  if (o.loss !== undefined && !LOSS_KINDS.includes(o.loss)) {
    bad("loss", `one of ${LOSS_KINDS.join(", ")}`, o.loss);
  }
}

/**
 * Trains the float weights of `student` (in place) to reproduce `teacher`'s first output on
 * `data`; returns what was done. `teacher` is the original model's bytes. Float16 models train
 * in float32 and get their weights back in float16.
 *
 * @example
 * ```ts
 * const teacher = encodeModel(model);
 * const { model: pruned } = await pruneModel(model, { pruneNumHeads: true, headPruningRatio: 0.5 });
 * const report = await distillModel(pruned, teacher, batches, { steps: 500 });
 * ```
 */
export async function distillModel(
  student: ModelProto,
  teacher: Uint8Array,
  data: Batches,
  options: DistillOptions,
): Promise<DistillReport> {
  checkOptions(options);
  const start = performance.now();
  const ort = await loadOrt();
  const { pool, hidden } = await teacherOutputs(teacher, data, !!options.hidden);
  if (options.labels && options.labels.length !== pool.size) {
    throw new PruneError(
      "bad-option",
      `distill.labels: ${options.labels.length} labels for ${pool.size} calibration samples`,
    );
  }
  const output = student.graph!.output![0].name!;
  const width = pool.outputRow[pool.outputRow.length - 1];
  const kind: LossKind = options.loss ??
    (isClassifierOutput(student, [2, ...pool.outputRow]) ? "kl" : "cosine");
  if (options.labels && kind !== "kl") {
    throw new PruneError("bad-option", `distill.labels go with the "kl" loss, not "${kind}"`);
  }
  if (options.labels && pool.rowsPerSample !== 1) {
    throw new PruneError(
      "bad-option",
      `distill.labels: one label per sample, but the output "${output}" has ` +
        `${pool.rowsPerSample} rows per sample`,
    );
  }
  if (kind === "pooled" && pool.outputRow.length < 2) {
    throw new PruneError(
      "bad-option",
      `distill.loss "pooled" averages the output over its tokens (axis 1), but "${output}" is ` +
        `[batch, ${pool.outputRow.join(", ")}]`,
    );
  }
  const spec: LossSpec = {
    kind,
    temperature: options.temperature ?? 2,
    labelWeight: options.labelWeight ?? 0.5,
    labels: !!options.labels,
    ...(kind === "pooled" ? { tokens: pool.rowsPerSample } : {}),
  };

  // The graph that trains: float32 throughout.
  const half = hasHalfFloats(student);
  const base = half ? float32Model(student) : student;
  const graph = new Graph(base.graph as GraphProto);
  const floats = (base.graph!.initializer ?? []).filter((t) =>
    t.dataType === 1 && tensorDims(t).reduce((a, b) => a * b, 1) >= 2 &&
    !graph.proto.input.some((v) => v.name === t.name)
  ).map((t) => t.name!);
  const tables = options.trainEmbeddings ? [] : floats.filter((n) => readAsTable(graph, n));
  const candidates = floats.filter((n) => !tables.includes(n));
  const inputShapes = Object.fromEntries(
    [...pool.inputRows].map(([name, row]) => [name, [2, ...row]]),
  );
  const shapes = await probeTensors(base, { inputShapes });
  const studentRow = shapes.get(output)?.dims.slice(1) ?? [];
  if (studentRow.join() !== pool.outputRow.join()) {
    throw new PruneError(
      "unsupported-graph",
      `distillation compares the first output "${output}" with the original's, but pruning ` +
        `changed its shape ([batch, ${pool.outputRow.join(", ")}] → ` +
        `[batch, ${studentRow.join(", ")}]); keep its channels (e.g. no embedding pruning)`,
    );
  }
  hidden.forEach((name, k) => {
    const row = shapes.get(name)?.dims.slice(1);
    const want = pool.rowOf(k + 1);
    if (!row || row.join() !== want.join()) {
      throw new PruneError(
        "unsupported-graph",
        `distill.hidden matches the block outputs with the original's, but ` +
          (row
            ? `pruning changed the shape of "${name}" ([batch, ${want.join(", ")}] → ` +
              `[batch, ${row.join(", ")}]): the residual width was pruned; keep it (no ` +
              `embedding pruning) or leave hidden-state matching off`
            : `the pruned model has no tensor "${name}"`),
      );
    }
  });
  const weighted = pool.masked || hidden.some((_, k) => pool.isMasked(k + 1));
  const tokens = pool.rowOf(hidden.findIndex((_, k) => pool.isMasked(k + 1)) + 1).slice(0, -1);
  const weightRow = pool.masked ? pool.outputRow.slice(0, -1) : tokens;
  const rowsOf = (dims: number[]) => [{ dimParam: "batch" }, ...dims.map((d) => ({ dimValue: d }))];
  const extra = [
    onnx.ValueInfoProto.create({
      name: TEACHER,
      type: { tensorType: { elemType: 1, shape: { dim: rowsOf(pool.outputRow) } } },
    }),
    ...(spec.labels
      ? [onnx.ValueInfoProto.create({
        name: LABELS,
        type: { tensorType: { elemType: 7, shape: { dim: [{ dimParam: "batch" }] } } },
      })]
      : []),
    ...(weighted
      ? [onnx.ValueInfoProto.create({
        name: WEIGHTS,
        type: { tensorType: { elemType: 1, shape: { dim: rowsOf(weightRow) } } },
      })]
      : []),
    ...hidden.map((_, k) =>
      onnx.ValueInfoProto.create({
        name: HIDDEN + k,
        type: { tensorType: { elemType: 1, shape: { dim: rowsOf(pool.rowOf(k + 1)) } } },
      })
    ),
  ];
  const hiddenSpec: LossSpec = { ...spec, kind: "cosine", labels: false };
  const hiddenShare = (options.hiddenWeight ?? 1) / Math.max(hidden.length, 1);
  const built = buildWeightGradientModel(base, shapes, {
    candidates,
    output,
    inputs: extra,
    seed: (b, y) =>
      seedLoss(
        spec,
        b,
        y,
        width,
        TEACHER,
        spec.labels ? LABELS : undefined,
        pool.masked ? WEIGHTS : undefined,
      ),
    also: hidden.map((tensor, k) => ({
      tensor,
      seed: (b, y) => {
        const row = pool.rowOf(k + 1);
        const d = seedLoss(
          hiddenSpec,
          b,
          y,
          row[row.length - 1],
          HIDDEN + k,
          undefined,
          pool.isMasked(k + 1) ? WEIGHTS : undefined,
        );
        return b.op("Mul", [d, b.constFloat(hiddenShare)]);
      },
    })),
  });
  const names = [...built.gradients.keys()];
  const tensors = new Map((base.graph!.initializer ?? []).map((t) => [t.name!, t]));
  const weights = names.map((n) => tensorToFloat32(tensors.get(n)!));
  const dims = names.map((n) => tensorDims(tensors.get(n)!));
  const decay = names.map((n) => readAsMatrix(graph, n));

  const train = await createSession(encodeModel(built.model));
  const score = await createSession(encodeModel(weightsAsInputs(base, new Set(names))));
  const inputTypes = new Map(
    (base.graph!.input ?? []).map((v) => [v.name!, v.type?.tensorType?.elemType ?? 1]),
  );
  const weightFeeds = () =>
    Object.fromEntries(names.map((n, i) => [n, new ort.Tensor("float32", weights[i], dims[i])]));
  const feedsOf = (idx: number[]) => pool.feeds(ort, idx, inputTypes);

  const seed = options.seed ?? 0;
  const rng = mulberry32(seed);
  const order = shuffle([...Array(pool.size).keys()], rng);
  const heldOutCount = options.heldOut === undefined
    ? Math.min(DEFAULT_HELD_OUT_MAX, Math.max(1, Math.round(0.1 * pool.size)))
    : options.heldOut > 0
    ? Math.max(1, Math.round(options.heldOut * pool.size))
    : 0;
  if (pool.size - heldOutCount < 1) {
    throw new PruneError(
      "bad-calibration",
      `distillation needs more calibration samples: ${pool.size} given, ${heldOutCount} held out`,
    );
  }
  const heldOut = order.slice(0, heldOutCount).sort((a, b) => a - b);
  const trainSet = order.slice(heldOutCount);
  const batchSize = Math.min(options.batchSize ?? 32, trainSet.length);
  const labelRows = (idx: number[]) =>
    options.labels ? idx.map((i) => options.labels![i]) : undefined;
  const rowWeights = (idx: number[]) => pool.masked ? pool.rowWeights(idx) : undefined;
  const hiddenFeeds = (idx: number[]) =>
    Object.fromEntries(
      hidden.map((_, k) => [
        HIDDEN + k,
        new ort.Tensor("float32", pool.teacher(idx, k + 1), [idx.length, ...pool.rowOf(k + 1)]),
      ]),
    );

  const scoreHeldOut = async (): Promise<number> => {
    let sum = 0, rows = 0;
    const chunk = Math.max(batchSize, 256);
    for (let s = 0; s < heldOut.length; s += chunk) {
      const idx = heldOut.slice(s, s + chunk);
      const out = await score.run({ ...feedsOf(idx), ...weightFeeds() }, [output]);
      const r = lossSum(
        spec,
        toFloat32(out[output]),
        pool.teacher(idx),
        width,
        labelRows(idx),
        rowWeights(idx),
      );
      sum += r.sum;
      rows += r.rows;
    }
    return sum / rows;
  };

  const steps = options.steps;
  const lr = options.lr ?? 5e-4;
  const warmup = Math.min(options.warmup ?? Math.round(steps * 0.05), steps);
  const evalEvery = options.evalEvery ?? Math.max(1, Math.ceil(steps / 10));
  const patience = options.patience ?? 3;
  const adam = new AdamW(weights, decay, { weightDecay: options.weightDecay ?? 0.01 });
  const gradOutputs = names.map((n) => built.gradients.get(n)!);

  let before = Infinity;
  let best = Infinity, bestStep = 0, stale = 0;
  let kept: Float32Array[] | undefined;
  let stopped: DistillReport["stopped"] = "steps";
  let step = 0, cursor = trainSet.length, running = NaN;
  const window = Math.max(1, Math.ceil(steps / 20));
  const trainLoss = { first: 0, firstN: 0, last: [] as number[] };
  let trainingMs = 0;
  try {
    if (heldOut.length) best = before = await scoreHeldOut();
    while (step < steps) {
      if (options.maxSeconds !== undefined && trainingMs / 1000 >= options.maxSeconds) {
        stopped = "time";
        break;
      }
      const t0 = performance.now();
      if (cursor + batchSize > trainSet.length) {
        shuffle(trainSet, rng);
        cursor = 0;
      }
      const idx = trainSet.slice(cursor, cursor + batchSize);
      cursor += batchSize;
      const feeds: Record<string, OrtTensor> = {
        ...feedsOf(idx),
        ...weightFeeds(),
        [TEACHER]: new ort.Tensor("float32", pool.teacher(idx), [idx.length, ...pool.outputRow]),
      };
      const labels = labelRows(idx);
      const rowWeight = rowWeights(idx);
      if (weighted) {
        feeds[WEIGHTS] = new ort.Tensor("float32", rowWeight ?? pool.rowWeights(idx), [
          idx.length,
          ...weightRow,
        ]);
      }
      Object.assign(feeds, hiddenFeeds(idx));
      if (labels) {
        feeds[LABELS] = new ort.Tensor(
          "int64",
          BigInt64Array.from(labels, (l) => BigInt(l)),
          [labels.length],
        );
      }
      const out = await train.run(feeds);
      const loss = lossSum(
        spec,
        toFloat32(out[output]),
        pool.teacher(idx),
        width,
        labels,
        rowWeight,
      );
      const grads = gradOutputs.map((g) => out[g].data as Float32Array);
      // AdamW checks the gradients before it updates anything.
      if (
        !Number.isFinite(loss.sum) || !adam.step(grads, learningRate(step + 1, steps, lr, warmup))
      ) {
        throw new PruneError(
          "bad-option",
          `distillation diverged at step ${step + 1} (the loss or a gradient is not finite); ` +
            `lower the learning rate (lr ${lr})`,
        );
      }
      step++;
      trainingMs += performance.now() - t0;
      const mean = loss.sum / loss.rows;
      running = Number.isNaN(running) ? mean : 0.9 * running + 0.1 * mean;
      if (step <= window) {
        trainLoss.first += mean;
        trainLoss.firstN++;
      }
      trainLoss.last.push(mean);
      if (trainLoss.last.length > window) trainLoss.last.shift();
      await options.onProgress?.(step, steps, running);
      if (heldOut.length && (step % evalEvery === 0 || step === steps)) {
        const now = await scoreHeldOut();
        if (now < best) {
          [best, bestStep, stale] = [now, step, 0];
          kept = weights.map((w) => w.slice());
        } else stale++;
        if (stale >= patience) {
          stopped = "early-stop";
          break;
        }
      }
    }
  } finally {
    adam.dispose();
    await train.release?.();
    await score.release?.();
  }
  // The best weights seen on the held-out split (the model as pruned when nothing helped).
  if (heldOut.length && bestStep !== step) {
    const chosen = bestStep === 0 ? names.map((n) => tensorToFloat32(tensors.get(n)!)) : kept!;
    chosen.forEach((w, i) => weights[i].set(w));
  }
  const after = heldOut.length ? best : undefined;

  // Written back into the student in its own types (float16 weights rounded from float32).
  const own = new Map((student.graph!.initializer ?? []).map((t) => [t.name!, t]));
  names.forEach((n, i) => writeWeight(own.get(n)!, weights[i], dims[i]));

  const last = trainLoss.last;
  return {
    loss: kind,
    ...(kind === "kl" ? { temperature: spec.temperature } : {}),
    steps: step,
    stopped,
    bestStep: heldOut.length ? bestStep : step,
    samples: { train: trainSet.length, heldOut: heldOut.length },
    ...(heldOut.length ? { heldOut: { before, after: after! } } : {}),
    train: {
      first: trainLoss.firstN ? trainLoss.first / trainLoss.firstN : NaN,
      last: last.length ? last.reduce((a, b) => a + b, 0) / last.length : NaN,
    },
    trained: { tensors: names.length, params: weights.reduce((a, w) => a + w.length, 0) },
    frozen: [
      ...tables.map((name) => ({
        name,
        reason: "a lookup table (Gather data) read by token ids; --distill-embeddings " +
          "(distill.trainEmbeddings) trains it",
      })),
      ...built.frozen,
    ],
    ...(options.hidden ? { hidden } : {}),
    seconds: (performance.now() - start) / 1000,
    msPerStep: step ? trainingMs / step : 0,
  };
}

function writeWeight(t: TensorProto, values: Float32Array, dims: number[]) {
  setTensorRawBytes(t, float32ToTensorBytes(values, t.dataType ?? 1), dims);
}

/**
 * Runs the teacher over the data once and keeps every sample with its output rows; with
 * `matchHidden`, with its block outputs too (found on the first batch), named in `hidden`.
 */
async function teacherOutputs(
  teacher: Uint8Array,
  data: Batches,
  matchHidden: boolean,
): Promise<{ pool: SamplePool; hidden: string[] }> {
  const ort = await loadOrt();
  // float16 inputs and outputs pass through onnxruntime as float32 (see runtime/float32_io.ts).
  const io = withFloat32Io(decodeModel(teacher));
  const output = io.model.graph!.output![0].name!;
  const pool = new SamplePool();
  let session: OrtSession | undefined;
  let hidden: string[] = [];
  try {
    for await (const feeds of data) {
      const wide = Object.fromEntries(
        Object.entries(feeds).map(([name, t]) => {
          const as = io.inputs.get(name);
          if (!as) return [name, t];
          return [as, new ort.Tensor("float32", halfToFloat32(t.data as Uint16Array), t.dims)];
        }),
      );
      if (!session) {
        let model = io.inputs.size || io.outputs.size ? encodeModel(io.model) : teacher;
        if (matchHidden) {
          const inputShapes = Object.fromEntries(
            Object.entries(wide).map(([name, t]) => [name, [2, ...t.dims.slice(1).map(Number)]]),
          );
          const shapes = await probeTensors(io.model, { inputShapes });
          hidden = blockOutputs(io.model, shapes, output);
          if (hidden.length === 0) {
            throw new PruneError(
              "unsupported-graph",
              "distill.hidden: no transformer block outputs were found to match",
            );
          }
          model = encodeModel(onnx.ModelProto.create({
            ...io.model,
            graph: onnx.GraphProto.create({
              ...io.model.graph,
              output: [
                ...(io.model.graph!.output ?? []),
                ...hidden.map((name) => onnx.ValueInfoProto.create({ name })),
              ],
            }),
          }));
        }
        session = await createSession(model);
      }
      const out = await session.run(wide, [output, ...hidden]);
      pool.add(feeds, [output, ...hidden].map((name) => floatOutput(ort, out[name])));
    }
  } finally {
    await session?.release?.();
  }
  if (pool.size === 0) throw new PruneError("bad-calibration", "the calibration data is empty");
  return { pool, hidden };
}

/** A float16 block output as float32 (the distilled output is float32 through float32_io). */
function floatOutput(ort: Awaited<ReturnType<typeof loadOrt>>, t: OrtTensor): OrtTensor {
  return t.type === "float16"
    ? new ort.Tensor("float32", halfToFloat32(t.data as Uint16Array), t.dims)
    : t;
}

/**
 * Whether a weight is read only as a Gather's data, looked up by indices that come from a graph
 * input (token ids: a word or token-type table), through views. Tables looked up by positions
 * or by constant indices (position embeddings, Swin's relative-position table) are read whole
 * by every batch and train.
 */
function readAsTable(graph: Graph, name: string): boolean {
  const todo = [name], seen = new Set<string>();
  let table = false;
  while (todo.length) {
    const t = todo.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    for (const { node, inputIndex } of graph.consumers(t)) {
      if (node.opType === "Gather" && inputIndex === 0) {
        if (!fromGraphInput(graph, node.input[1])) return false;
        table = true;
      } else if (["Identity", "Cast"].includes(node.opType ?? "")) todo.push(...node.output);
      else return false;
    }
  }
  return table;
}

/** Whether a tensor is a graph input, or one reshaped or cast. */
function fromGraphInput(graph: Graph, name: string): boolean {
  for (let steps = 0; steps < 8; steps++) {
    if (graph.proto.input.some((v) => v.name === name) && !graph.constant(name)) return true;
    const node = graph.producer(name);
    if (
      !node ||
      !["Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten"].includes(
        node.opType ?? "",
      )
    ) return false;
    name = node.input[0];
  }
  return false;
}

/** Whether a weight is read as a matrix (decayed) rather than a bias, norm or embedding row. */
function readAsMatrix(graph: Graph, name: string): boolean {
  const todo = [name], seen = new Set<string>();
  while (todo.length) {
    const t = todo.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    for (const { node, inputIndex } of graph.consumers(t)) {
      if (node.opType === "MatMul" || node.opType === "Gemm") {
        if (inputIndex < 2) return true;
      } else if (node.opType === "Conv") {
        if (inputIndex === 1) return true;
      } else if (["Identity", "Cast", "Transpose", "Reshape"].includes(node.opType ?? "")) {
        todo.push(...node.output);
      }
    }
  }
  return false;
}

function toFloat32(t: OrtTensor): Float32Array {
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>);
}

/** A small seeded generator (mulberry32): the split and the batch order follow the seed. */
function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(a: T[], rng: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/**
 * Calibration data read into memory (pruning and distillation both pass over it); a function
 * is called for a fresh pass. Refuses missing data, naming the option.
 */
export async function readBatches(
  calibration: Batches | (() => Batches) | undefined,
): Promise<Record<string, OrtTensor>[]> {
  if (!calibration) throw new PruneError("bad-option", "distill needs calibration data");
  const batches: Record<string, OrtTensor>[] = [];
  for await (const b of typeof calibration === "function" ? calibration() : calibration) {
    batches.push(b);
  }
  return batches;
}
