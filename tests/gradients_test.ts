/**
 * The ONNX backward graph against finite differences: the gradient of a gate ξ on channel j of a
 * linear layer's input x (x_j ← ξ·x_j, the same as scaling row j of the layer's weight) must
 * equal (L(1+ε) − L(1−ε)) / 2ε, with L the cross-entropy on the model's own predictions, summed
 * over the batch. Checked on real exports with real (Fashion-MNIST) or seeded inputs.
 */
import assert from "node:assert/strict";
import { buildGradientModel } from "../src/autodiff/backward.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { float32ToTensorBytes, tensorToFloat32 } from "../src/onnx/tensor.ts";
import { setTensorRawBytes } from "../src/onnx/tensor.ts";
import { Graph, type GraphProto } from "../src/graph/graph.ts";
import { probeTensors } from "../src/runtime/probe.ts";
import { createSession, loadOrt, type OrtTensor } from "../src/runtime/ort.ts";
import { pruneModel } from "../src/prune.ts";
import { type ModelProto, onnx } from "../src/onnx/proto.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const ort = await loadOrt();

/** Inputs of MatMul/Gemm layers with a constant weight whose input has no other reader. */
function linearInputs(model: ModelProto): { x: string; weight: string; transB: boolean }[] {
  const graph = new Graph(model.graph as GraphProto);
  const out = [];
  for (const n of graph.nodes) {
    if (n.opType !== "MatMul" && n.opType !== "Gemm") continue;
    if (!graph.initializer(n.input[1]) || graph.consumers(n.input[0]).length !== 1) continue;
    const transB = n.opType === "Gemm" &&
      n.attribute.some((a) => a.name === "transB" && Number(a.i) === 1);
    out.push({ x: n.input[0], weight: n.input[1], transB });
  }
  return out;
}

async function lossOf(model: ModelProto, feeds: Record<string, OrtTensor>, labels: number[]) {
  const session = await createSession(encodeModel(model));
  const y = await session.run(feeds);
  const z = y[session.outputNames[0]];
  const k = Number(z.dims[1]), data = z.data as Float32Array;
  let loss = 0;
  labels.forEach((label, b) => {
    const row = data.subarray(b * k, (b + 1) * k);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    loss += lse - row[label];
  });
  return loss;
}

async function predictions(bytes: Uint8Array, feeds: Record<string, OrtTensor>) {
  const session = await createSession(bytes);
  const z = (await session.run(feeds))[session.outputNames[0]];
  const k = Number(z.dims[1]), data = z.data as Float32Array;
  return Array.from({ length: Number(z.dims[0]) }, (_, b) => {
    const row = data.subarray(b * k, (b + 1) * k);
    return row.indexOf(Math.max(...row));
  });
}

/** Checks `channels` of every `pick`-th linear input against central differences. */
async function checkGradients(
  file: string,
  feeds: Record<string, OrtTensor>,
  channels: number[],
  pick: (i: number, count: number) => boolean,
) {
  const bytes = await Deno.readFile(new URL(file, FIXTURES));
  const model = decodeModel(bytes);
  const batch = Number(Object.values(feeds)[0].dims[0]);
  const shapes = await probeTensors(model, { batch: 2 });
  const layers = linearInputs(model).filter((_, i, all) => pick(i, all.length));
  assert.ok(layers.length > 0, `${file}: no linear layer to check`);
  const { model: withGrad, gates } = buildGradientModel(model, shapes, layers.map((l) => l.x), {
    batch: 2,
  });
  const session = await createSession(encodeModel(withGrad));
  const outs = await session.run(feeds, [...gates.values()].map((g) => g.output));
  const labels = await predictions(bytes, feeds);
  for (const layer of layers) {
    const gate = gates.get(layer.x);
    assert.ok(gate, `${file}: no gradient for "${layer.x}"`);
    const out = outs[gate.output];
    const g = out.data as Float32Array;
    const width = Number(out.dims[1]), rows = Number(out.dims[0]);
    assert.equal(rows, gate.perSample ? batch : 1);
    for (const j of channels) {
      let analytic = 0;
      for (let b = 0; b < rows; b++) analytic += g[b * width + j];
      const eps = 1e-2;
      const scaled = async (xi: number) => {
        const copy = decodeModel(bytes);
        const w = copy.graph!.initializer!.find((t) => t.name === layer.weight)!;
        const values = tensorToFloat32(w);
        const [rows, cols] = w.dims!.map(Number);
        for (let k = 0; k < (layer.transB ? rows : cols); k++) {
          const at = layer.transB ? k * cols + j : j * cols + k;
          values[at] *= xi;
        }
        setTensorRawBytes(w, float32ToTensorBytes(values, 1), [rows, cols]);
        return await lossOf(copy, feeds, labels);
      };
      const numeric = ((await scaled(1 + eps)) - (await scaled(1 - eps))) / (2 * eps);
      const scale = Math.max(1e-3, Math.abs(numeric), Math.abs(analytic));
      assert.ok(
        Math.abs(analytic - numeric) / scale < 2e-2,
        `${file} "${layer.x}"[${j}]: backward graph ${analytic}, finite difference ${numeric}`,
      );
    }
  }
}

function seeded(n: number, seed = 7): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

Deno.test("gate gradients match finite differences: trained Fashion-MNIST ViT, real images", async () => {
  const data = await Deno.readFile(new URL("fmnist_test_1000.bin", FIXTURES));
  const x = Float32Array.from(data.subarray(16, 16 + 8 * 784), (p) => (p / 255 - 0.286) / 0.353);
  const feeds = { input: new ort.Tensor("float32", x, [8, 1, 28, 28]) };
  // fc2 and attention output projections of the first and last blocks, and the classifier.
  await checkGradients("fmnist_vit.onnx", feeds, [0, 5, 77], (i, n) => i < 4 || i >= n - 3);
});

for (
  const file of [
    "timm_vit.onnx",
    "timm_vit_dynamo.onnx",
    "hf_vit.onnx",
    "torchvision_vit.onnx",
    "more/swin.onnx",
    "more/swin_dynamo.onnx",
    "more/deit_distilled.onnx",
    "more/timm_vit_opset14.onnx",
    "more/timm_vit_gelu_tanh.onnx",
    "more/timm_vit_gelu_op20.onnx",
  ]
) {
  Deno.test(`gate gradients match finite differences: ${file}`, async () => {
    const model = decodeModel(await Deno.readFile(new URL(file, FIXTURES)));
    const input = model.graph!.input![0];
    const dims = input.type!.tensorType!.shape!.dim!.map((d, i) =>
      i === 0 ? 3 : Number(d.dimValue)
    );
    const n = dims.reduce((a, b) => a * b, 1);
    const feeds = { [input.name!]: new ort.Tensor("float32", seeded(n), dims) };
    await checkGradients(file, feeds, [1, 3], () => true);
  });
}

/** The real test images of the trained Fashion-MNIST ViT, in batches. */
async function fmnistBatches(count: number, size: number) {
  const data = await Deno.readFile(new URL("fmnist_test_1000.bin", FIXTURES));
  const out = [];
  for (let s = 0; s < count; s += size) {
    const e = Math.min(count, s + size);
    const x = Float32Array.from(
      data.subarray(16 + s * 784, 16 + e * 784),
      (p) => (p / 255 - 0.286) / 0.353,
    );
    out.push({ input: new ort.Tensor("float32", x, [e - s, 1, 28, 28]) });
  }
  return out;
}

Deno.test("michel, taylor and fisher keep the heads an independent gate computation ranks first", async () => {
  const bytes = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
  const model = decodeModel(bytes);
  const calibration = await fmnistBatches(96, 32);
  // Independent: per-sample head gates at every attention output projection's input.
  const graph = new Graph(model.graph as GraphProto);
  const proj = graph.nodes.filter((n) => /attn\/proj\/MatMul$/.test(n.name));
  assert.equal(proj.length, 6);
  const shapes = await probeTensors(model, { batch: 2 });
  const { model: withGrad, gates } = buildGradientModel(
    model,
    shapes,
    proj.map((n) => n.input[0]),
    {
      batch: 2,
    },
  );
  const session = await createSession(encodeModel(withGrad));
  const michel = proj.map(() => new Float64Array(3));
  const taylor = proj.map(() => new Float64Array(3));
  const fisher = proj.map(() => new Float64Array(3));
  for (const feeds of calibration) {
    const out = await session.run(feeds, [...gates.values()].map((g) => g.output));
    proj.forEach((n, block) => {
      const s = out[gates.get(n.input[0])!.output].data as Float32Array;
      const width = 96, d = 32;
      for (let b = 0; b < s.length / width; b++) {
        for (let h = 0; h < 3; h++) {
          let head = 0;
          for (let j = 0; j < d; j++) head += s[b * width + h * d + j];
          michel[block][h] += Math.abs(head);
          taylor[block][h] += head;
          fisher[block][h] += head * head;
        }
      }
    });
  }
  const top = (scores: Float64Array, keep: number) =>
    [...scores.keys()].sort((a, b) => scores[b] - scores[a]).slice(0, keep).sort();
  const criteria = [["michel", michel], ["taylor", taylor], ["fisher", fisher]] as const;
  for (const [criterion, scores] of criteria) {
    const { report } = await pruneModel(decodeModel(bytes), {
      pruneNumHeads: true,
      headPruningRatio: 0.3,
      criterion,
      calibration,
      dryRun: true,
    });
    const blocks = report.blocks.filter((b) => b.kind === "attention");
    assert.equal(blocks.length, 6);
    blocks.forEach((block, i) => {
      if (block.kind !== "attention") return;
      const expected = criterion === "taylor" ? scores[i].map((v) => v * v) : scores[i];
      assert.deepEqual(
        [...block.keptHeads].sort(),
        top(expected, block.heads.after),
        `${criterion} block ${i}`,
      );
    });
  }
});

Deno.test("gradient criteria prune to a model equal to masking the same channels", async () => {
  const bytes = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
  const calibration = await fmnistBatches(64, 32);
  const feeds = (await fmnistBatches(16, 16))[0];
  for (const criterion of ["taylor", "fisher", "michel"] as const) {
    const options = {
      pruneHeadDims: true,
      headPruningRatio: 0.25,
      pruningRatio: 0.5,
      criterion,
      calibration,
    };
    const pruned = await pruneModel(decodeModel(bytes), options);
    const masked = await pruneModel(decodeModel(bytes), { ...options, mask: true });
    assert.deepEqual(pruned.report.blocks, masked.report.blocks);
    const [a, b] = [
      await createSession(encodeModel(pruned.model)),
      await createSession(encodeModel(masked.model)),
    ];
    const ya = (await a.run(feeds))[a.outputNames[0]].data as Float32Array;
    const yb = (await b.run(feeds))[b.outputNames[0]].data as Float32Array;
    const diff = ya.reduce((m, v, i) => Math.max(m, Math.abs(v - yb[i])), 0);
    assert.ok(diff < 1e-4, `${criterion}: pruned and masked differ by ${diff}`);
  }
});

/** Seeded token ids for the BERT fixture: ids, a full mask, token types 0. */
function bertFeeds(model: ModelProto, batch: number, seq: number, seed = 11) {
  let s = seed;
  const ids = BigInt64Array.from({ length: batch * seq }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return BigInt(1 + (s % 99));
  });
  return Object.fromEntries(model.graph!.input!.map((i) => [
    i.name!,
    new ort.Tensor(
      "int64",
      i.name === "input_ids"
        ? ids
        : new BigInt64Array(batch * seq).fill(i.name === "attention_mask" ? 1n : 0n),
      [batch, seq],
    ),
  ]));
}

Deno.test("gate gradients of an embedding model: εᵀ∂z/∂ξ for the ε drawn, against finite differences", async () => {
  const bytes = await Deno.readFile(new URL("more/bert.onnx", FIXTURES));
  const model = decodeModel(bytes);
  const feeds = bertFeeds(model, 3, 8);
  const shapes = await probeTensors(model, { batch: 2 });
  const layers = linearInputs(model).filter((_, i) => i % 3 === 0);
  const { model: withGrad, gates, classifier } = buildGradientModel(
    model,
    shapes,
    layers.map((l) => l.x),
    { batch: 2 },
  );
  assert.equal(classifier, false);
  const draws = withGrad.graph!.node!.filter((n) => n.opType === "RandomNormalLike");
  assert.equal(draws.length, 1);
  withGrad.graph!.output!.push(onnx.ValueInfoProto.create({ name: draws[0].output![0] }));
  const session = await createSession(encodeModel(withGrad));
  const out = await session.run(feeds, [
    draws[0].output![0],
    ...[...gates.values()].map((g) => g.output),
  ]);
  const eps = out[draws[0].output![0]].data as Float32Array;
  const outputOf = async (m: ModelProto) => {
    const s = await createSession(encodeModel(m));
    return (await s.run(feeds))[s.outputNames[0]].data as Float32Array;
  };
  for (const layer of layers) {
    const gate = gates.get(layer.x);
    assert.ok(gate?.perSample, `no per-sample gradient for "${layer.x}"`);
    const g = out[gate.output].data as Float32Array;
    const width = Number(out[gate.output].dims[1]);
    // Differences of float32 outputs: errors are judged against the layer's largest gradient.
    const largest = g.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (const j of [0, 7]) {
      const h = 5e-2;
      const scaled = (xi: number) => {
        const copy = decodeModel(bytes);
        const w = copy.graph!.initializer!.find((t) => t.name === layer.weight)!;
        const values = tensorToFloat32(w);
        const [rows, cols] = w.dims!.map(Number);
        for (let k = 0; k < (layer.transB ? rows : cols); k++) {
          values[layer.transB ? k * cols + j : j * cols + k] *= xi;
        }
        setTensorRawBytes(w, float32ToTensorBytes(values, 1), [rows, cols]);
        return outputOf(copy);
      };
      const [up, down] = [await scaled(1 + h), await scaled(1 - h)];
      const per = up.length / 3;
      for (let b = 0; b < 3; b++) {
        let numeric = 0;
        for (let i = b * per; i < (b + 1) * per; i++) {
          numeric += eps[i] * (up[i] - down[i]) / (2 * h);
        }
        const analytic = g[b * width + j];
        const scale = Math.max(0.05 * largest, Math.abs(numeric), Math.abs(analytic));
        assert.ok(
          Math.abs(analytic - numeric) / scale < 2e-2,
          `"${layer.x}"[${j}] sample ${b}: backward graph ${analytic}, finite difference ${numeric}`,
        );
      }
    }
  }
});

Deno.test("fisher and michel rank an embedding model's heads; taylor is refused there", async () => {
  const bert = decodeModel(await Deno.readFile(new URL("more/bert.onnx", FIXTURES)));
  const calibration = [bertFeeds(bert, 4, 8, 1), bertFeeds(bert, 4, 8, 2)];
  for (const criterion of ["fisher", "michel"] as const) {
    const { report } = await pruneModel(decodeModel(encodeModel(bert)), {
      pruneNumHeads: true,
      headPruningRatio: 0.5,
      criterion,
      calibration,
      dryRun: true,
    });
    const heads = report.blocks.filter((b) => b.kind === "attention");
    assert.ok(heads.length > 0);
    for (const b of heads) {
      if (b.kind === "attention") assert.equal(b.heads.after, b.heads.before / 2);
    }
  }
  const refused =
    /criterion "taylor" needs a classifier: the first graph output "[^"]+" is not \[batch, classes\]/;
  await assert.rejects(
    () => pruneModel(bert, { pruningRatio: 0.5, criterion: "taylor", calibration }),
    refused,
  );
  // In a search the candidates share the first one's gate gradients: refused before any runs.
  const candidates = [
    { criterion: "fisher" as const, compensation: "none" as const, allocation: "local" as const },
    { criterion: "taylor" as const, compensation: "none" as const, allocation: "local" as const },
  ];
  await assert.rejects(
    () =>
      pruneModel(decodeModel(encodeModel(bert)), {
        pruneNumHeads: true,
        headPruningRatio: 0.5,
        calibration,
        search: { candidates, seed: 1 },
      }),
    refused,
  );
});

Deno.test("gradient criteria: a clear error without calibration", async () => {
  const vit = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
  await assert.rejects(
    () => pruneModel(decodeModel(vit), { pruningRatio: 0.5, criterion: "taylor" }),
    /criterion "taylor" needs calibration data/,
  );
});
