/**
 * Distillation: the weight gradients of every loss against finite differences on real exports,
 * the optimizer and its schedule, and short runs that must lower the loss on data they never saw,
 * the same model for the same seed, and clear errors.
 */
import assert from "node:assert/strict";
import {
  buildWeightGradientModel,
  type GradientSeed,
  weightsAsInputs,
} from "../src/autodiff/backward.ts";
import { type LossSpec, lossSum, seedLoss } from "../src/distill/loss.ts";
import { AdamW, learningRate } from "../src/distill/adamw.ts";
import { distillModel } from "../src/distill/mod.ts";
import { float32Model } from "../src/distill/float32.ts";
import { SamplePool } from "../src/distill/samples.ts";
import { blockOutputs } from "../src/distill/hidden.ts";
import { onnx } from "../src/onnx/proto.ts";
import type { ModelProto } from "../src/onnx/proto.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import {
  f32ToF16Bits,
  float32ToTensorBytes,
  setTensorRawBytes,
  tensorDims,
  tensorToFloat32,
} from "../src/onnx/tensor.ts";
import { probeTensors } from "../src/runtime/probe.ts";
import { createSession, loadOrt, type OrtTensor } from "../src/runtime/ort.ts";
import { pruneModel } from "../src/prune.ts";
import { pruneToTarget } from "../src/target.ts";
import { withFloat32Io } from "../src/runtime/float32_io.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const ort = await loadOrt();

function seeded(n: number, seed = 7): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

/** Real Fashion-MNIST test images, `count` from `first`. */
async function fmnist(first: number, count: number): Promise<Record<string, OrtTensor>> {
  const data = await Deno.readFile(new URL("fmnist_test_1000.bin", FIXTURES));
  const x = Float32Array.from(
    data.subarray(16 + first * 784, 16 + (first + count) * 784),
    (p) => (p / 255 - 0.286) / 0.353,
  );
  return { input: new ort.Tensor("float32", x, [count, 1, 28, 28]) };
}

/** Seeded inputs for an image model's first input, batch `batch`. */
function imageFeeds(model: ModelProto, batch: number): Record<string, OrtTensor> {
  const input = model.graph!.input![0];
  const dims = input.type!.tensorType!.shape!.dim!.map((d, i) =>
    i === 0 ? batch : Number(d.dimValue)
  );
  const n = dims.reduce((a, b) => a * b, 1);
  return { [input.name!]: new ort.Tensor("float32", seeded(n), dims) };
}

/**
 * Checks ∂L/∂W of every trained weight W along one direction D per tensor (D = sign(G)·u, u
 * seeded in [0.5, 1]: every element counts, the largest gradients most): the backward graph's
 * Σ D·G against (L(W + εD) − L(W − εD)) / 2ε, L computed in float64 from onnxruntime's outputs.
 */
async function checkWeightGradients(
  file: string,
  model: ModelProto,
  feeds: Record<string, OrtTensor>,
  spec: LossSpec,
  teacher: Float32Array,
  labels?: number[],
  rowWeights?: Float32Array,
  maxStep = 0.05,
) {
  const output = model.graph!.output![0].name!;
  const batch = Number(Object.values(feeds)[0].dims[0]);
  const inputShapes = Object.fromEntries(
    Object.entries(feeds).map(([k, t]) => [k, [2, ...t.dims.slice(1).map(Number)]]),
  );
  const shapes = await probeTensors(model, { inputShapes });
  const outDims = shapes.get(output)!.dims;
  const width = outDims[outDims.length - 1];
  const candidates = (model.graph!.initializer ?? []).filter((t) =>
    t.dataType === 1 && tensorDims(t).reduce((a, b) => a * b, 1) >= 2
  ).map((t) => t.name!);
  const built = buildWeightGradientModel(model, shapes, {
    candidates,
    output,
    inputs: [
      onnx.ValueInfoProto.create({ name: "teacher", type: { tensorType: { elemType: 1 } } }),
      ...(labels
        ? [onnx.ValueInfoProto.create({ name: "labels", type: { tensorType: { elemType: 7 } } })]
        : []),
      ...(rowWeights
        ? [onnx.ValueInfoProto.create({ name: "weights", type: { tensorType: { elemType: 1 } } })]
        : []),
    ],
    seed: (b, y) =>
      seedLoss(
        spec,
        b,
        y,
        width,
        "teacher",
        labels ? "labels" : undefined,
        rowWeights ? "weights" : undefined,
      ),
  });
  assert.ok(built.gradients.size > 0, `${file}: nothing to train`);
  const names = [...built.gradients.keys()];
  const inits = new Map(model.graph!.initializer!.map((t) => [t.name!, t]));
  const weights = new Map(names.map((n) => [n, tensorToFloat32(inits.get(n)!)]));
  const weightFeeds = (over?: [string, Float32Array]) =>
    Object.fromEntries(
      names.map((n) => [
        n,
        new ort.Tensor(
          "float32",
          over?.[0] === n ? over[1] : weights.get(n)!,
          tensorDims(inits.get(n)!),
        ),
      ]),
    );
  const teacherDims = [batch, ...outDims.slice(1)];
  const extra: Record<string, OrtTensor> = {
    teacher: new ort.Tensor("float32", teacher, teacherDims),
    ...(labels
      ? { labels: new ort.Tensor("int64", BigInt64Array.from(labels, BigInt), [labels.length]) }
      : {}),
    ...(rowWeights
      ? { weights: new ort.Tensor("float32", rowWeights, teacherDims.slice(0, -1)) }
      : {}),
  };
  const train = await createSession(encodeModel(built.model));
  const out = await train.run({ ...feeds, ...weightFeeds(), ...extra });
  const plain = await createSession(encodeModel(weightsAsInputs(model, new Set(names))));
  const lossAt = async (over?: [string, Float32Array]) => {
    const y = (await plain.run({ ...feeds, ...weightFeeds(over) }))[output].data as Float32Array;
    const { sum, rows } = lossSum(spec, y, teacher, width, labels, rowWeights);
    return sum / rows;
  };
  const l0 = await lossAt();
  const forward = lossSum(
    spec,
    out[output].data as Float32Array,
    teacher,
    width,
    labels,
    rowWeights,
  );
  assert.ok(Math.abs(forward.sum / forward.rows - l0) < 1e-5 * Math.max(1, l0));
  let checked = 0;
  for (const [i, name] of names.entries()) {
    const g = out[built.gradients.get(name)!].data as Float32Array;
    const w = weights.get(name)!;
    assert.equal(g.length, w.length, `${file} "${name}": gradient size`);
    const u = seeded(w.length, 11 + i);
    const d = Float32Array.from(g, (v, k) => (v >= 0 ? 1 : -1) * (0.75 + 0.5 * u[k]));
    let analytic = 0;
    for (let k = 0; k < g.length; k++) analytic += d[k] * g[k];
    if (Math.abs(analytic) < 1e-6) continue; // nothing to see through float32 differences
    // A step that moves the loss by about 1e-3 of itself, and W by at most `maxStep` (5%) of
    // its scale.
    const scale = Math.sqrt(w.reduce((a, v) => a + v * v, 0) / w.length) || 1;
    const eps = Math.min(1e-3 * Math.max(l0, 0.1) / Math.abs(analytic), maxStep * scale);
    const moved = (sign: number) => Float32Array.from(w, (v, k) => v + sign * eps * d[k]);
    const numeric = ((await lossAt([name, moved(1)])) - (await lossAt([name, moved(-1)]))) /
      (2 * eps);
    const tolerance = 2e-2 * Math.max(Math.abs(numeric), Math.abs(analytic));
    assert.ok(
      Math.abs(analytic - numeric) <= tolerance,
      `${file} "${name}": backward graph ${analytic}, finite difference ${numeric}`,
    );
    checked++;
  }
  assert.ok(checked >= names.length / 2, `${file}: only ${checked} of ${names.length} checked`);
  return { names, frozen: built.frozen };
}

const KL: LossSpec = { kind: "kl", temperature: 2, labelWeight: 0.5, labels: false };

Deno.test("weight gradients match finite differences: trained Fashion-MNIST ViT, KL", async () => {
  const model = decodeModel(await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES)));
  const feeds = await fmnist(0, 6);
  const { names, frozen } = await checkWeightGradients(
    "fmnist_vit.onnx",
    model,
    feeds,
    KL,
    seeded(60, 3).map((v) => 4 * v),
  );
  // Every float weight trains: patch embedding (Conv), class token, positions, norms, layers.
  assert.deepEqual(frozen, []);
  assert.equal(names.length, 80);
});

for (const file of ["hf_vit.onnx", "timm_vit_dynamo.onnx", "more/swin.onnx"]) {
  Deno.test(`weight gradients match finite differences: ${file}, KL`, async () => {
    const model = decodeModel(await Deno.readFile(new URL(file, FIXTURES)));
    const { frozen } = await checkWeightGradients(
      file,
      model,
      imageFeeds(model, 3),
      KL,
      seeded(30, 5).map((v) => 3 * v),
    );
    assert.deepEqual(frozen, []);
  });
}

Deno.test("weight gradients match finite differences: KL with labels, MSE", async () => {
  const model = decodeModel(await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES)));
  const feeds = await fmnist(10, 5);
  const teacher = seeded(50, 9).map((v) => 4 * v);
  const labels = [3, 0, 9, 1, 1];
  await checkWeightGradients(
    "fmnist_vit.onnx",
    model,
    feeds,
    { ...KL, labels: true },
    teacher,
    labels,
  );
  const mse: LossSpec = { ...KL, kind: "mse" };
  await checkWeightGradients("fmnist_vit.onnx", model, feeds, mse, teacher);
});

Deno.test("weight gradients match finite differences: float16 ViT trained in float32", async () => {
  const model = float32Model(
    decodeModel(await Deno.readFile(new URL("timm_vit_f16.onnx", FIXTURES))),
  );
  const { frozen } = await checkWeightGradients(
    "timm_vit_f16.onnx",
    model,
    imageFeeds(model, 3),
    KL,
    seeded(30, 5).map((v) => 3 * v),
  );
  assert.deepEqual(frozen, []);
});

Deno.test("weight gradients match finite differences: BERT embeddings, cosine", async () => {
  const model = decodeModel(await Deno.readFile(new URL("more/bert.onnx", FIXTURES)));
  const [batch, seq] = [3, 8];
  const ids = BigInt64Array.from({ length: batch * seq }, (_, i) => BigInt((i * 7 + 3) % 50));
  const mask = BigInt64Array.from(
    { length: batch * seq },
    (_, i) => i % seq < 6 + (i % 3) ? 1n : 0n,
  );
  const feeds = {
    input_ids: new ort.Tensor("int64", ids, [batch, seq]),
    attention_mask: new ort.Tensor("int64", mask, [batch, seq]),
    token_type_ids: new ort.Tensor("int64", new BigInt64Array(batch * seq), [batch, seq]),
  };
  const cosine: LossSpec = { ...KL, kind: "cosine" };
  const { names, frozen } = await checkWeightGradients(
    "more/bert.onnx",
    model,
    feeds,
    cosine,
    seeded(batch * seq * 64, 13),
  );
  // The word, position and token-type tables train too (rows read at the ids).
  assert.ok(names.some((n) => /word_embeddings/.test(n)), names.join(", "));
  assert.deepEqual(frozen.filter((f) => !/pooler/.test(f.name)), []);
});

/** BERT fixture feeds: `ids` per sample, right-padded with id 0 and mask 0 to `length`. */
function bertFeeds(ids: number[][], length: number): Record<string, OrtTensor> {
  const n = ids.length;
  const flat = new BigInt64Array(n * length), mask = new BigInt64Array(n * length);
  ids.forEach((row, r) =>
    row.forEach((id, k) => {
      flat[r * length + k] = BigInt(id);
      mask[r * length + k] = 1n;
    })
  );
  return {
    input_ids: new ort.Tensor("int64", flat, [n, length]),
    attention_mask: new ort.Tensor("int64", mask, [n, length]),
    token_type_ids: new ort.Tensor("int64", new BigInt64Array(n * length), [n, length]),
  };
}

/** Token ids of `count` samples of the given lengths ([CLS]-like 2 first, then seeded ids). */
function tokenRows(lengths: number[], seed: number): number[][] {
  return lengths.map((l, r) =>
    Array.from({ length: l }, (_, k) => k === 0 ? 2 : 3 + ((k * 13 + r * 7 + seed * 5) % 90))
  );
}

Deno.test("weight gradients match finite differences: BERT, padding tokens left out of the loss", async () => {
  const model = decodeModel(await Deno.readFile(new URL("more/bert.onnx", FIXTURES)));
  const lengths = [5, 8, 3];
  const feeds = bertFeeds(tokenRows(lengths, 1), 8);
  const weights = Float32Array.from(feeds.attention_mask.data as BigInt64Array, Number);
  // Teacher rows at padding positions are noise: they must not count. Steps up to half a
  // tensor's scale: at 5% the query biases move the MSE by less than float32 outputs resolve.
  const teacher = seeded(3 * 8 * 64, 17);
  for (const kind of ["cosine", "mse", "pooled"] as const) {
    await checkWeightGradients(
      `more/bert.onnx, ${kind}`,
      model,
      feeds,
      { ...KL, kind, tokens: 8 },
      teacher,
      undefined,
      weights,
      0.5,
    );
  }
});

/** One forward + backward pass of `spec` on the BERT fixture: the loss's sum and rows, and
 * ∂(mean loss)/∂W per trained weight. */
/** The model's own values of the trained weights, as the feeds of a weight-gradient model. */
function trainedWeightFeeds(
  ort: Awaited<ReturnType<typeof loadOrt>>,
  model: ModelProto,
  names: Iterable<string>,
): Record<string, OrtTensor> {
  const inits = new Map(model.graph!.initializer!.map((t) => [t.name!, t]));
  return Object.fromEntries(
    [...names].map((w) => [
      w,
      new ort.Tensor("float32", tensorToFloat32(inits.get(w)!), tensorDims(inits.get(w)!)),
    ]),
  );
}

async function bertStep(
  model: ModelProto,
  feeds: Record<string, OrtTensor>,
  spec: LossSpec,
  teacher: Float32Array,
  weights?: Float32Array,
) {
  const [n, length] = feeds.input_ids.dims.map(Number);
  const shapes = await probeTensors(model, {
    inputShapes: Object.fromEntries(Object.keys(feeds).map((k) => [k, [2, length]])),
  });
  const candidates = model.graph!.initializer!.filter((t) =>
    t.dataType === 1 && tensorDims(t).reduce((a, b) => a * b, 1) >= 2
  ).map((t) => t.name!);
  const built = buildWeightGradientModel(model, shapes, {
    candidates,
    output: "last_hidden_state",
    inputs: [
      onnx.ValueInfoProto.create({ name: "teacher", type: { tensorType: { elemType: 1 } } }),
      ...(weights
        ? [onnx.ValueInfoProto.create({ name: "weights", type: { tensorType: { elemType: 1 } } })]
        : []),
    ],
    seed: (b, y) => seedLoss(spec, b, y, 64, "teacher", undefined, weights ? "weights" : undefined),
  });
  const session = await createSession(encodeModel(built.model));
  const out = await session.run({
    ...feeds,
    ...trainedWeightFeeds(ort, model, built.gradients.keys()),
    teacher: new ort.Tensor("float32", teacher, [n, length, 64]),
    ...(weights ? { weights: new ort.Tensor("float32", weights, [n, length]) } : {}),
  });
  await session.release();
  const loss = lossSum(
    spec,
    out.last_hidden_state.data as Float32Array,
    teacher,
    64,
    undefined,
    weights,
  );
  const grads = new Map(
    [...built.gradients].map(([w, g]) => [w, out[g].data as Float32Array]),
  );
  return { ...loss, grads };
}

Deno.test("a padded batch has the loss and gradients of its samples run unpadded, one by one", async () => {
  const model = decodeModel(await Deno.readFile(new URL("more/bert.onnx", FIXTURES)));
  const lengths = [5, 9, 3, 7];
  const ids = tokenRows(lengths, 2);
  const length = 9;
  const rowsOf = (r: number) => seeded(lengths[r] * 64, 30 + r);
  for (const kind of ["cosine", "mse", "pooled"] as const) {
    const spec: LossSpec = { ...KL, kind, tokens: length };
    // The padded batch: teacher rows of padding tokens are noise.
    const teacher = seeded(lengths.length * length * 64, 19);
    lengths.forEach((_, r) => teacher.set(rowsOf(r), r * length * 64));
    const feeds = bertFeeds(ids, length);
    const weights = Float32Array.from(feeds.attention_mask.data as BigInt64Array, Number);
    const padded = await bertStep(model, feeds, spec, teacher, weights);
    // Loss rows: tokens, or samples for the pooled embedding.
    assert.equal(padded.rows, kind === "pooled" ? 4 : 24);
    // Each sample alone at its own length, no padding, no weights.
    let sum = 0, rows = 0;
    const grads = new Map<string, Float64Array>();
    for (const [r, l] of lengths.entries()) {
      const one = await bertStep(
        model,
        bertFeeds([ids[r]], l),
        { ...spec, tokens: l },
        rowsOf(r),
      );
      assert.equal(one.rows, kind === "pooled" ? 1 : l);
      sum += one.sum;
      rows += one.rows;
      for (const [w, g] of one.grads) {
        const acc = grads.get(w) ?? new Float64Array(g.length);
        g.forEach((v, k) => acc[k] += v * one.rows); // ∂(sum)/∂W = rows · ∂(mean)/∂W
        grads.set(w, acc);
      }
    }
    const mean = sum / rows;
    assert.ok(
      Math.abs(padded.sum / padded.rows - mean) < 1e-5 * mean,
      `${kind}: padded ${padded.sum / padded.rows}, unpadded ${mean}`,
    );
    assert.deepEqual([...padded.grads.keys()].sort(), [...grads.keys()].sort());
    for (const [w, g] of padded.grads) {
      const want = grads.get(w)!.map((v) => v / rows);
      let diff = 0, scale = 0;
      want.forEach((v, k) => {
        diff = Math.max(diff, Math.abs(g[k] - v));
        scale = Math.max(scale, Math.abs(v));
      });
      assert.ok(diff <= 1e-3 * scale + 1e-9, `${kind} "${w}": ${diff} off, scale ${scale}`);
    }
  }
});

Deno.test("calibration batches of several lengths: cut after the last unmasked token, padded to one length", () => {
  const pool = new SamplePool();
  const teacherOf = (n: number, length: number, first: number) =>
    new ort.Tensor(
      "float32",
      Float32Array.from({ length: n * length * 2 }, (_, i) => first + i),
      [n, length, 2],
    );
  // Batch 1: two samples of 4 tokens. Batch 2: lengths 6 and 3 padded to 7.
  pool.add(bertFeeds(tokenRows([4, 4], 0), 4), teacherOf(2, 4, 0));
  pool.add(bertFeeds(tokenRows([6, 3], 1), 7), teacherOf(2, 7, 1000));
  assert.equal(pool.mask, "attention_mask");
  assert.ok(pool.masked);
  assert.deepEqual(pool.outputRow, [6, 2]);
  assert.deepEqual(pool.inputRows.get("input_ids"), [6]);
  const feeds = pool.feeds(ort, [3, 0, 2], new Map());
  assert.deepEqual(feeds.input_ids.dims, [3, 6]);
  assert.deepEqual(
    Array.from(feeds.attention_mask.data as BigInt64Array, Number),
    [1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1],
  );
  assert.deepEqual(Array.from(pool.rowWeights([3, 0, 2])), [
    1,
    1,
    1,
    0,
    0,
    0,
    1,
    1,
    1,
    1,
    0,
    0,
    1,
    1,
    1,
    1,
    1,
    1,
  ]);
  const ids = Array.from(feeds.input_ids.data as BigInt64Array, Number);
  assert.deepEqual(ids.slice(0, 6), [...tokenRows([6, 3], 1)[1], 0, 0, 0]);
  // Sample 3 (batch 2, row 1): its 3 tokens' teacher rows, then zeros.
  const t = pool.teacher([3, 2]);
  assert.deepEqual(Array.from(t.subarray(0, 12)), [
    1014,
    1015,
    1016,
    1017,
    1018,
    1019,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  assert.deepEqual(Array.from(t.subarray(12, 24)), Array.from({ length: 12 }, (_, i) => 1000 + i));
});

Deno.test("distilling a BERT on batches of several lengths lowers the loss on unseen padded texts", async () => {
  const teacher = await Deno.readFile(new URL("more/bert.onnx", FIXTURES));
  const { model: student } = await pruneModel(decodeModel(teacher), {
    pruneNumHeads: true,
    headPruningRatio: 0.5,
    pruningRatio: 0.5,
  });
  const batch = (lengths: number[], seed: number) =>
    bertFeeds(tokenRows(lengths, seed), Math.max(...lengths));
  const data = [
    batch([12, 12, 12, 12, 12, 12, 12, 12], 1),
    batch([5, 9, 12, 7, 3, 10, 11, 6], 2),
    batch([4, 4, 4, 4, 4, 4, 4, 4], 3),
    batch([16, 2, 8, 14, 9, 13, 15, 16], 4),
    batch([6, 6, 11, 11, 12, 12, 9, 9], 5),
  ];
  const unseen = batch([10, 6, 13, 4, 8, 11], 9);
  const cosine: LossSpec = { ...KL, kind: "cosine" };
  const lossOn = async (bytes: Uint8Array, feeds: Record<string, OrtTensor>) => {
    const [a, b] = [await createSession(teacher), await createSession(bytes)];
    const t = (await a.run(feeds)).last_hidden_state.data as Float32Array;
    const s = (await b.run(feeds)).last_hidden_state.data as Float32Array;
    const w = Float32Array.from(feeds.attention_mask.data as BigInt64Array, Number);
    const { sum, rows } = lossSum(cosine, s, t, 64, undefined, w);
    return sum / rows;
  };
  const before = await lossOn(encodeModel(student), unseen);
  const report = await distillModel(student, teacher, data, {
    steps: 30,
    batchSize: 8,
    lr: 5e-4,
    seed: 2,
  });
  const after = await lossOn(encodeModel(student), unseen);
  assert.equal(report.loss, "cosine");
  assert.deepEqual(report.samples, { train: 36, heldOut: 4 });
  assert.ok(report.heldOut!.after < report.heldOut!.before, JSON.stringify(report.heldOut));
  assert.ok(after < 0.8 * before, `masked cosine loss on unseen texts ${before} → ${after}`);
});

Deno.test("tables looked up by token ids are left as they are unless trainEmbeddings (BERT)", async () => {
  const teacher = await Deno.readFile(new URL("more/bert.onnx", FIXTURES));
  const pruned = () =>
    pruneModel(decodeModel(teacher), { pruneNumHeads: true, headPruningRatio: 0.5 });
  const data = [1, 2, 3].map((seed) => bertFeeds(tokenRows([8, 5, 7, 6], seed), 8));
  const tables = (m: ModelProto) =>
    new Map(
      (m.graph!.initializer ?? []).filter((t) =>
        /embeddings/.test(t.name!) && !/LayerNorm/.test(t.name!)
      ).map((t) => [t.name!, t.rawData!.slice()]),
    );
  const changed = (m: ModelProto, before: Map<string, Uint8Array>) =>
    [...tables(m)].filter(([name, bytes]) => !bytes.every((b, i) => b === before.get(name)![i]))
      .map(([name]) => name).sort();
  const { model: student } = await pruned();
  const before = tables(student);
  assert.equal(before.size, 3, [...before.keys()].join());
  // No held-out split: the weights after the last step are kept, whatever they score.
  const report = await distillModel(student, teacher, data, { steps: 4, batchSize: 4, heldOut: 0 });
  // Word and token-type tables are looked up by input ids; positions by a slice of a constant.
  const byIds = ["embeddings.token_type_embeddings.weight", "embeddings.word_embeddings.weight"];
  assert.deepEqual(
    report.frozen.filter((f) => /lookup table/.test(f.reason)).map((f) => f.name).sort(),
    byIds,
  );
  assert.deepEqual(changed(student, before), ["embeddings.position_embeddings.weight"]);

  const { model: all } = await pruned();
  const trained = await distillModel(all, teacher, data, {
    steps: 4,
    batchSize: 4,
    heldOut: 0,
    trainEmbeddings: true,
  });
  assert.ok(!trained.frozen.some((f) => /lookup table/.test(f.reason)));
  assert.ok(trained.trained.params > report.trained.params);
  assert.ok(changed(all, before).includes("embeddings.word_embeddings.weight"));
});

Deno.test("hidden-state terms add their gradients to the output's (BERT, padded)", async () => {
  const model = decodeModel(await Deno.readFile(new URL("more/bert.onnx", FIXTURES)));
  const feeds = bertFeeds(tokenRows([6, 4, 8], 3), 8);
  const weights = Float32Array.from(feeds.attention_mask.data as BigInt64Array, Number);
  const shapes = await probeTensors(model, {
    inputShapes: Object.fromEntries(Object.keys(feeds).map((k) => [k, [2, 8]])),
  });
  const hidden = blockOutputs(model, shapes, "last_hidden_state");
  assert.deepEqual(hidden, ["/encoder/layer.0/output/LayerNorm/LayerNormalization_output_0"]);
  const cosine: LossSpec = { ...KL, kind: "cosine" };
  const candidates = model.graph!.initializer!.filter((t) =>
    t.dataType === 1 && tensorDims(t).reduce((a, b) => a * b, 1) >= 2
  ).map((t) => t.name!);
  const input = (name: string) =>
    onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1 } } });
  const seed = (teacher: string) => (b: GradientSeed, y: string) =>
    seedLoss(cosine, b, y, 64, teacher, undefined, "weights");
  const run = async (output: string, also: boolean) => {
    const built = buildWeightGradientModel(model, shapes, {
      candidates,
      output,
      inputs: [input("teacher"), input("weights"), ...(also ? [input("hidden")] : [])],
      seed: seed("teacher"),
      ...(also
        ? {
          also: [{
            tensor: hidden[0],
            seed: (b: GradientSeed, y: string) =>
              b.op("Mul", [seed("hidden")(b, y), b.constFloat(0.7)]),
          }],
        }
        : {}),
    });
    const session = await createSession(encodeModel(built.model));
    const out = await session.run({
      ...feeds,
      ...trainedWeightFeeds(ort, model, built.gradients.keys()),
      teacher: new ort.Tensor("float32", seeded(3 * 8 * 64, output === hidden[0] ? 23 : 21), [
        3,
        8,
        64,
      ]),
      weights: new ort.Tensor("float32", weights, [3, 8]),
      ...(also ? { hidden: new ort.Tensor("float32", seeded(3 * 8 * 64, 23), [3, 8, 64]) } : {}),
    });
    await session.release();
    return new Map([...built.gradients].map(([w, g]) => [w, out[g].data as Float32Array]));
  };
  const both = await run("last_hidden_state", true);
  const outOnly = await run("last_hidden_state", false);
  const hiddenOnly = await run(hidden[0], false);
  // Layer 1's weights reach the output only; layer 0's and the embeddings' reach both.
  assert.ok([...hiddenOnly.keys()].every((w) => both.has(w)));
  assert.ok([...hiddenOnly.keys()].some((w) => /layer\.0/.test(w)));
  for (const [w, g] of both) {
    const a = outOnly.get(w), h = hiddenOnly.get(w);
    let diff = 0, scale = 0;
    g.forEach((v, k) => {
      const want = (a?.[k] ?? 0) + 0.7 * (h?.[k] ?? 0);
      diff = Math.max(diff, Math.abs(v - want));
      scale = Math.max(scale, Math.abs(want));
    });
    assert.ok(diff <= 1e-4 * scale + 1e-9, `"${w}": ${diff} off, scale ${scale}`);
  }
});

Deno.test("distillation matching block outputs: BERT with padding, the ViT; refused when the residual width is pruned", async () => {
  const bert = await Deno.readFile(new URL("more/bert.onnx", FIXTURES));
  const { model: student } = await pruneModel(decodeModel(bert), {
    pruneNumHeads: true,
    headPruningRatio: 0.5,
    pruningRatio: 0.5,
  });
  const data = [
    bertFeeds(tokenRows([5, 9, 12, 7, 3, 10, 11, 6], 2), 12),
    bertFeeds(tokenRows([16, 2, 8, 14, 9, 13, 15, 16], 4), 16),
    bertFeeds(tokenRows([4, 4, 4, 4, 4, 4, 4, 4], 3), 4),
  ];
  const report = await distillModel(student, bert, data, {
    steps: 12,
    batchSize: 8,
    lr: 5e-4,
    hidden: true,
  });
  assert.deepEqual(report.hidden, [
    "/encoder/layer.0/output/LayerNorm/LayerNormalization_output_0",
  ]);
  assert.ok(report.heldOut!.after < report.heldOut!.before, JSON.stringify(report.heldOut));

  const { teacher, student: vit } = await prunedVit();
  const vitReport = await distillModel(vit, teacher, [await fmnist(0, 128)], {
    steps: 10,
    batchSize: 16,
    hidden: true,
    hiddenWeight: 0.5,
  });
  // Six blocks: five residual streams, and the final norm after the last.
  assert.deepEqual(vitReport.hidden, [
    ...[0, 1, 2, 3, 4].map((i) => `/blocks/blocks.${i}/Add_1_output_0`),
    "/norm/LayerNormalization_output_0",
  ]);
  assert.ok(vitReport.heldOut!.after < vitReport.heldOut!.before);

  const { model: narrow } = await pruneModel(decodeModel(teacher), {
    pruneHeadDims: true,
    headPruningRatio: 0.5,
    embeddingPruningRatio: 0.25,
  });
  await assert.rejects(
    async () => distillModel(narrow, teacher, [await fmnist(0, 32)], { steps: 2, hidden: true }),
    /distill.hidden .* "\/blocks\/blocks.0\/Add_1_output_0" .*residual width was pruned/,
  );
});

Deno.test("AdamW (in the compute core) matches PyTorch's torch.optim.AdamW, refuses non-finite gradients; warm-up then cosine decay", () => {
  // torch 2 reference: two parameter groups (decay 0.1 and 0), three steps at lr 0.01, 0.02, 0.005.
  const w = new Float32Array([1, -0.5, 0.25]), b = new Float32Array([0.3, -0.2]);
  const adam = new AdamW([w, b], [true, false], { weightDecay: 0.1 });
  const grads = [
    [[0.5, -1, 0], [2, 0.1]],
    [[-0.2, 0.3, 1e-3], [1, -0.1]],
    [[0.7, 0.7, -0.7], [0, 0.5]],
  ];
  [0.01, 0.02, 0.005].forEach((lr, i) => adam.step(grads[i], lr));
  const close = (a: Float32Array, e: number[]) =>
    e.forEach((v, i) => assert.ok(Math.abs(a[i] - v) < 1e-6, `${a[i]} against ${v}`));
  close(w, [0.9762733578681946, -0.4801309108734131, 0.23744076490402222]);
  close(b, [0.267753541469574, -0.21196570992469788]);
  // A gradient that is not finite is refused before anything moves.
  const [w0, b0] = [w.slice(), b.slice()];
  for (const bad of [NaN, Infinity, -Infinity]) {
    assert.equal(adam.step([[0.1, bad, 0.1], [0.1, 0.1]], 0.01), false);
    assert.deepEqual([w, b], [w0, b0]);
  }
  assert.equal(adam.step([[0.1, 0.1, 0.1], [0.1, 0.1]], 0.01), true);
  assert.notDeepEqual(w, w0);
  assert.throws(
    () => adam.step([[0.1], [0.1, 0.1]], 0.01),
    /gradient 0 has 1 values, its weight 3/,
  );
  adam.dispose();
  assert.throws(() => adam.step(grads[0], 0.01), /after dispose/);

  assert.equal(learningRate(1, 100, 1e-3, 10), 1e-4);
  assert.equal(learningRate(10, 100, 1e-3, 10), 1e-3);
  assert.ok(Math.abs(learningRate(55, 100, 1e-3, 10) - 5e-4) < 1e-12);
  assert.equal(learningRate(100, 100, 1e-3, 10), 0);
  assert.ok(learningRate(30, 100, 1e-3, 10) > learningRate(31, 100, 1e-3, 10));
});

/** The trained Fashion-MNIST ViT with half its head dims and 60% of its MLP channels gone. */
async function prunedVit(): Promise<{ teacher: Uint8Array; student: ModelProto }> {
  const teacher = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
  const { model } = await pruneModel(decodeModel(teacher), {
    pruneHeadDims: true,
    headPruningRatio: 0.5,
    pruningRatio: 0.6,
  });
  return { teacher, student: model };
}

/** Mean T²·KL of the student's outputs against the teacher's on `feeds`. */
async function klOn(teacher: Uint8Array, student: Uint8Array, feeds: Record<string, OrtTensor>) {
  const [a, b] = [await createSession(teacher), await createSession(student)];
  const t = (await a.run(feeds))[a.outputNames[0]].data as Float32Array;
  const s = (await b.run(feeds))[b.outputNames[0]].data as Float32Array;
  const { sum, rows } = lossSum(KL, s, t, 10);
  return sum / rows;
}

Deno.test("the default held-out split is a tenth of the samples, at most 256; a given share is kept", async () => {
  const { teacher, student } = await prunedVit();
  // 2800 samples (the test images again and again): a tenth would be 280.
  const data = await Promise.all(Array.from({ length: 14 }, (_, i) => fmnist((i % 5) * 200, 200)));
  const size = data.reduce((n, b) => n + Number(b.input.dims[0]), 0);
  assert.equal(size, 2800);
  const one = { steps: 1, batchSize: 8, evalEvery: 1 };
  const copy = () => decodeModel(encodeModel(student));
  const byDefault = await distillModel(copy(), teacher, data, one);
  assert.deepEqual(byDefault.samples, { train: 2544, heldOut: 256 });
  const given = await distillModel(structuredClone(student), teacher, data, {
    ...one,
    heldOut: 0.1,
  });
  assert.deepEqual(given.samples, { train: 2520, heldOut: 280 });
});

Deno.test("a short distillation lowers the loss on images it never saw", async () => {
  const { teacher, student } = await prunedVit();
  const unseen = await fmnist(800, 200);
  const before = await klOn(teacher, encodeModel(student), unseen);
  const data = [await fmnist(0, 128), await fmnist(128, 128)];
  const report = await distillModel(student, teacher, data, { steps: 40, batchSize: 16, seed: 1 });
  const after = await klOn(teacher, encodeModel(student), unseen);
  assert.ok(report.bestStep > 0 && report.steps <= 40);
  assert.deepEqual(report.samples, { train: 230, heldOut: 26 });
  assert.ok(report.heldOut!.after < report.heldOut!.before, JSON.stringify(report.heldOut));
  assert.ok(after < 0.8 * before, `KL on unseen images ${before} → ${after}`);
  assert.equal(report.trained.tensors, 80);
  assert.deepEqual(report.frozen, []);
});

Deno.test("distillation is deterministic for a seed, and the seed matters", async () => {
  const runs: Uint8Array[] = [];
  for (const seed of [3, 3, 4]) {
    const { teacher, student } = await prunedVit();
    await distillModel(student, teacher, [await fmnist(0, 96)], {
      steps: 8,
      batchSize: 16,
      seed,
    });
    runs.push(encodeModel(student));
  }
  assert.deepEqual(runs[0], runs[1], "same seed, same model");
  assert.notDeepEqual(runs[0], runs[2], "another seed, another model");
});

Deno.test("a float16 model trains in float32 and is written back in float16", async () => {
  const teacher = await Deno.readFile(new URL("timm_vit_f16.onnx", FIXTURES));
  const { model: student } = await pruneModel(decodeModel(teacher), {
    pruneNumHeads: true,
    headPruningRatio: 0.5,
    pruningRatio: 0.5,
  });
  const before = new Map(student.graph!.initializer!.map((t) => [t.name!, tensorToFloat32(t)]));
  const images = (first: number, count: number) => {
    const x = seeded(count * 3 * 32 * 32, 100 + first);
    const half = new Uint16Array(x.length);
    x.forEach((v, i) => half[i] = f32ToF16Bits(2 * v));
    return { input: new ort.Tensor("float16", half, [count, 3, 32, 32]) };
  };
  const report = await distillModel(student, teacher, [images(0, 32), images(32, 32)], {
    steps: 10,
    batchSize: 8,
    lr: 1e-3,
  });
  assert.ok(report.heldOut!.after < report.heldOut!.before, JSON.stringify(report.heldOut));
  const floats = student.graph!.initializer!.filter((t) => t.dataType === 1 || t.dataType === 10);
  assert.ok(floats.every((t) => t.dataType === 10), "every weight stays float16");
  const changed = floats.filter((t) =>
    tensorToFloat32(t).some((v, i) => v !== before.get(t.name!)![i])
  );
  assert.ok(changed.length >= report.trained.tensors - 2, `${changed.length} weights changed`);
  assert.equal(student.graph!.output![0].type!.tensorType!.elemType, 10);
  // onnxruntime-node under Deno takes float16 through float32 edges.
  const io = withFloat32Io(student);
  const session = await createSession(encodeModel(io.model));
  const x = seeded(4 * 3 * 32 * 32, 64);
  const y = await session.run({
    [io.inputs.get("input")!]: new ort.Tensor("float32", x, [4, 3, 32, 32]),
  });
  assert.ok((y[session.outputNames[0]].data as Float32Array).every(Number.isFinite));
});

Deno.test("distillation after pruning to a target, and through pruneModel's option", async () => {
  const bytes = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
  const calibration = [await fmnist(0, 64), await fmnist(64, 64)];
  const distill = { steps: 6, batchSize: 16, seed: 5, lr: 1e-4 };
  const target = await pruneToTarget(decodeModel(bytes), { macs: 0.5, steps: 2 }, {
    pruneHeadDims: true,
    calibration,
    distill,
  });
  assert.ok(target.target.met);
  assert.ok(target.report.distill!.steps >= 1);
  assert.equal(target.report.distill!.trained.tensors, 80);
  const direct = await pruneModel(decodeModel(bytes), {
    pruneHeadDims: true,
    headPruningRatio: 0.5,
    pruningRatio: 0.5,
    // A one-pass iterable: pruning and distillation both need the data.
    calibration: (function* () {
      yield* calibration;
    })(),
    compensation: "bias",
    distill,
  });
  assert.ok(direct.report.distill!.heldOut!.after < direct.report.distill!.heldOut!.before);
  for (const m of [target.model, direct.model]) await createSession(encodeModel(m));
});

Deno.test("distillation: clear errors naming the option", async () => {
  const bytes = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
  const options = { pruningRatio: 0.5 };
  await assert.rejects(
    () => pruneModel(decodeModel(bytes), { ...options, distill: { steps: 5 } }),
    /distill needs calibration data/,
  );
  const calibration = [await fmnist(0, 16)];
  for (
    const [distill, message] of [
      [{ steps: 0 }, /distill.steps must be a positive integer, got 0/],
      [{ steps: 5, lr: -1 }, /distill.lr must be a positive number, got -1/],
      [{ steps: 5, heldOut: 1 }, /distill.heldOut must be in \[0, 1\), got 1/],
      [{ steps: 5, labelWeight: 2 }, /distill.labelWeight must be in \[0, 1\], got 2/],
      [{ steps: 5, labels: [1, 2] }, /distill.labels: 2 labels for 16 calibration samples/],
      [{ steps: 5, loss: "cosine", labels: new Array(16).fill(0) }, /labels go with the "kl"/],
      [{ steps: 5, lr: 1e6, heldOut: 0 }, /diverged at step \d+ .*lower the learning rate/],
    ] as const
  ) {
    await assert.rejects(
      () => pruneModel(decodeModel(bytes), { ...options, calibration, distill }),
      message,
    );
  }
});

Deno.test("distillation refuses a student whose first output differs, naming it", async () => {
  const teacher = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
  // The classifier cut to 5 classes: [batch, 10] against [batch, 5].
  const student = decodeModel(teacher);
  const head = student.graph!.node!.find((n) => n.opType === "Gemm")!;
  for (const [name, keep] of [[head.input![1], 5 * 96], [head.input![2], 5]] as const) {
    const t = student.graph!.initializer!.find((x) => x.name === name)!;
    const dims = tensorDims(t);
    setTensorRawBytes(
      t,
      float32ToTensorBytes(tensorToFloat32(t).slice(0, keep), 1),
      [5, ...dims.slice(1)],
    );
  }
  student.graph!.output![0].type!.tensorType!.shape!.dim![1] = { dimValue: 5 };
  await assert.rejects(
    async () => distillModel(student, teacher, [await fmnist(0, 16)], { steps: 2 }),
    /first output "logits" .* changed its shape \(\[batch, 10\] → \[batch, 5\]\)/,
  );
});
