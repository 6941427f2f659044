/**
 * A merged decoder (scripts/fixtures/zoo/kv_cache.py, `kv_llama_merged`): one graph whose `If` on
 * `use_cache_branch` holds the decoder with past (then) and without (else) as its branches, both
 * reading the same weights. Heads and MLP channels are pruned through both branches; pruned ≡
 * masked is checked on every output with the condition true (a cache of 3 tokens fed, 2 new) and
 * false (no cache: empty past, 2 tokens), the pruned model reading the kept slices of the past
 * and its presents compared with the kept slices of the masked model's.
 */
import assert from "node:assert/strict";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { DataType, type ModelProto, onnx } from "../src/onnx/proto.ts";
import { float32ToTensorBytes, makeTensor } from "../src/onnx/tensor.ts";
import { pruneModel, type RunOptions } from "../src/prune.ts";
import { createSession, loadOrt, type OrtTensor } from "../src/runtime/ort.ts";
import { createCore } from "../src/core/mod.ts";
import { PruneError } from "../src/errors.ts";
import { uniqueScopeNames } from "../src/graph/scopes.ts";
import type { GraphProto } from "../src/graph/graph.ts";
import { seededFloats } from "./helpers/onnx_builders.ts";

const FILE = new URL("./fixtures/zoo/kv_llama_merged.onnx", import.meta.url);
const core = await createCore({ backend: "cpu" });
const NEW = 2, HEADS = 4, HEAD_DIM = 8, LAYERS = 2;

/** Feeds of one decoder step: with a cache of `past` tokens (condition true), or none. */
async function feeds(past: number, useCache: boolean): Promise<Record<string, OrtTensor>> {
  const ort = await loadOrt();
  const ints = (values: number[]) =>
    new ort.Tensor("int64", BigInt64Array.from(values.map(BigInt)), [1, values.length]);
  const out: Record<string, OrtTensor> = {
    input_ids: ints([5, 17]),
    attention_mask: ints(Array(past + NEW).fill(1)),
    position_ids: ints([past, past + 1]),
    use_cache_branch: new ort.Tensor("bool", Uint8Array.from([useCache ? 1 : 0]), [1]),
  };
  let seed = 1;
  for (let i = 0; i < LAYERS; i++) {
    for (const kv of ["key", "value"]) {
      const dims = [1, HEADS, past, HEAD_DIM];
      const n = dims.reduce((a, b) => a * b, 1);
      out[`past_key_values.${i}.${kv}`] = new ort.Tensor("float32", seededFloats(n, seed++), dims);
    }
  }
  return out;
}

/** The entries of `t` at the kept indices along each given axis. */
async function keep(t: OrtTensor, kept: { axis: number; indices: number[] }[]): Promise<OrtTensor> {
  const ort = await loadOrt();
  let data = t.data as Float32Array, dims = [...t.dims];
  for (const { axis, indices } of kept) {
    const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
    const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
    const out = new Float32Array(outer * indices.length * inner);
    for (let o = 0; o < outer; o++) {
      indices.forEach((k, j) => {
        const from = (o * dims[axis] + k) * inner;
        out.set(data.subarray(from, from + inner), (o * indices.length + j) * inner);
      });
    }
    data = out;
    dims = dims.map((d, i) => i === axis ? indices.length : d);
  }
  return new ort.Tensor("float32", data, dims);
}

async function run(model: ModelProto, input: Record<string, OrtTensor>) {
  const session = await createSession(encodeModel(model));
  try {
    return await session.run(input);
  } finally {
    await session.release?.();
  }
}

function maxDiff(a: OrtTensor, b: OrtTensor): number {
  assert.deepEqual([...a.dims], [...b.dims]);
  const x = a.data as Float32Array, y = b.data as Float32Array;
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - y[i]));
  return d;
}

/** Pruned and masked, compared on every output for both values of the condition. */
async function mergedCheck(options: RunOptions) {
  const bytes = await Deno.readFile(FILE);
  const pruned = await pruneModel(decodeModel(bytes), { ...options, core });
  const masked = await pruneModel(decodeModel(bytes), { ...options, core, mask: true });
  const changes = pruned.report.interfaces ?? [];
  const results = [];
  for (const [past, useCache] of [[3, true], [0, false]] as const) {
    const x = await feeds(past, useCache);
    const xp: Record<string, OrtTensor> = {};
    for (const [name, t] of Object.entries(x)) {
      const c = changes.find((c) => c.kind === "input" && c.name === name);
      xp[name] = c ? await keep(t, c.kept) : t;
    }
    const original = await run(decodeModel(bytes), x);
    const ym = await run(masked.model, x);
    const yp = await run(pruned.model, xp);
    let difference = 0;
    const outputs = Object.keys(ym);
    for (const name of outputs) {
      const c = changes.find((c) => c.kind === "output" && c.name === name);
      difference = Math.max(
        difference,
        maxDiff(yp[name], c ? await keep(ym[name], c.kept) : ym[name]),
      );
    }
    assert.equal(outputs.length, 1 + 2 * LAYERS);
    assert.equal(ym["present.0.key"].dims[2], past + NEW);
    results.push({ useCache, difference, effect: maxDiff(original.logits, ym.logits) });
  }
  return { results, report: pruned.report, model: pruned.model };
}

Deno.test("merged decoder: heads pruned through both If branches ≡ masked, with and without cache", async () => {
  const r = await mergedCheck({ pruneNumHeads: true, headPruningRatio: 0.5 });
  for (const { useCache, difference, effect } of r.results) {
    assert.ok(difference <= 1e-4, `use_cache_branch=${useCache}: |pruned − masked| ${difference}`);
    assert.ok(effect > 1e-5, `use_cache_branch=${useCache}: vacuous (${effect})`);
  }
  const attention = r.report.blocks.filter((b) => b.kind === "attention");
  assert.equal(attention.length, LAYERS, "one block per layer, across both branches");
  for (const b of attention) {
    assert.deepEqual(b.kind === "attention" && b.heads, { before: 4, after: 2 });
  }
  const names = (r.report.interfaces ?? []).map((c) => `${c.kind} ${c.name}`).sort();
  assert.deepEqual(names, [
    ...["0.key", "0.value", "1.key", "1.value"].map((n) => `input past_key_values.${n}`),
    ...["0.key", "0.value", "1.key", "1.value"].map((n) => `output present.${n}`),
  ]);
  const past = r.report.interfaces!.find((c) => c.name === "past_key_values.1.value")!;
  assert.deepEqual(past.after, ["batch_size", 2, "past_sequence_length", 8]);
  assert.ok(r.report.params.after < r.report.params.before);
  assert.equal(r.report.problems, undefined);
});

Deno.test("merged decoder: MLP channels pruned in both branches ≡ masked, the cache unchanged", async () => {
  const r = await mergedCheck({ pruningRatio: 0.5 });
  for (const { useCache, difference, effect } of r.results) {
    assert.ok(difference <= 1e-4, `use_cache_branch=${useCache}: |pruned − masked| ${difference}`);
    assert.ok(effect > 1e-5, `use_cache_branch=${useCache}: vacuous (${effect})`);
  }
  assert.equal(r.report.interfaces, undefined);
  const mlp = r.report.blocks.filter((b) => b.kind === "mlp");
  assert.ok(mlp.length >= LAYERS);
  for (const b of mlp) assert.deepEqual(b.kind === "mlp" && b.channels, { before: 64, after: 32 });
  // The branches share their weights: both keep the same channels, so nothing is copied.
  assert.equal(r.report.params.after, r.report.params.before - LAYERS * 3 * 32 * 32);
});

Deno.test("merged decoder: head dims under RoPE are refused naming the rotary Add", async () => {
  await assert.rejects(
    async () =>
      pruneModel(decodeModel(await Deno.readFile(FILE)), {
        pruneHeadDims: true,
        headPruningRatio: 0.5,
        core,
      }),
    (e: Error) => {
      assert.ok(e instanceof PruneError);
      assert.match(e.message, /RoPE, Add node/);
      return true;
    },
  );
});

Deno.test("scopes: names the two branches both define are made unique, uses follow", async () => {
  const model = decodeModel(await Deno.readFile(FILE));
  const graph = model.graph as GraphProto;
  const renamed = uniqueScopeNames(graph);
  assert.ok(renamed > 100);
  const seen = new Set<string>();
  const visit = (g: GraphProto) => {
    for (const n of g.node) {
      for (const o of n.output ?? []) {
        assert.ok(!seen.has(o), `"${o}" defined twice`);
        seen.add(o);
      }
      for (const a of n.attribute ?? []) if (a.g) visit(a.g as GraphProto);
    }
  };
  visit(graph);
  // Nothing the model computes changed.
  const x = await feeds(3, true);
  const a = await run(decodeModel(await Deno.readFile(FILE)), x);
  const b = await run(model, x);
  for (const name of Object.keys(a)) assert.equal(maxDiff(a[name], b[name]), 0);
  assert.equal(uniqueScopeNames(graph), 0, "a second pass changes nothing");
});

/** x → fc1 → If(cond: then Relu, else `otherwise`) → fc2 → y: an MLP whose activation sits in
 * the branches of an If. */
function branchedMlp(otherwise: "sigmoid" | "constant"): ModelProto {
  const float = (name: string, dims: number[], seed: number) =>
    makeTensor(
      name,
      DataType.FLOAT,
      dims,
      float32ToTensorBytes(seededFloats(dims.reduce((a, b) => a * b, 1), seed), DataType.FLOAT),
    );
  const info = (name: string, type: number, dims: number[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: { tensorType: { elemType: type, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
    });
  const branch = (name: string, node: ReturnType<typeof onnx.NodeProto.create>) =>
    onnx.GraphProto.create({ name, node: [node], output: [info(node.output![0], 1, [1, 4, 16])] });
  const then = branch(
    "then",
    onnx.NodeProto.create({ opType: "Relu", input: ["h"], output: ["t"] }),
  );
  // The same output name in both branches, as two exports of one model have.
  const other = branch(
    "else",
    otherwise === "sigmoid"
      ? onnx.NodeProto.create({ opType: "Sigmoid", input: ["h"], output: ["t"] })
      : onnx.NodeProto.create({ opType: "Identity", input: ["Z"], output: ["t"] }),
  );
  const graph = onnx.GraphProto.create({
    name: "branched",
    node: [
      onnx.NodeProto.create({ name: "fc1", opType: "MatMul", input: ["x", "W1"], output: ["h"] }),
      onnx.NodeProto.create({
        name: "branches",
        opType: "If",
        input: ["cond"],
        output: ["a"],
        attribute: [
          { name: "then_branch", type: onnx.AttributeProto.AttributeType.GRAPH, g: then },
          { name: "else_branch", type: onnx.AttributeProto.AttributeType.GRAPH, g: other },
        ],
      }),
      onnx.NodeProto.create({ name: "fc2", opType: "MatMul", input: ["a", "W2"], output: ["y"] }),
    ],
    initializer: [float("W1", [8, 16], 3), float("W2", [16, 8], 4), float("Z", [1, 4, 16], 5)],
    input: [info("x", 1, [1, 4, 8]), info("cond", DataType.BOOL, [1])],
    output: [info("y", 1, [1, 4, 8])],
  });
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph,
  });
}

Deno.test("If: branches that agree on the channels prune ≡ masked with either condition", async () => {
  const bytes = encodeModel(branchedMlp("sigmoid"));
  const pruned = await pruneModel(decodeModel(bytes), { pruningRatio: 0.5, core });
  const masked = await pruneModel(decodeModel(bytes), { pruningRatio: 0.5, core, mask: true });
  assert.deepEqual(
    pruned.report.blocks.map((b) => b.kind === "mlp" && b.channels),
    [{ before: 16, after: 8 }],
  );
  const ort = await loadOrt();
  for (const cond of [1, 0]) {
    const x = {
      x: new ort.Tensor("float32", seededFloats(32, 9), [1, 4, 8]),
      cond: new ort.Tensor("bool", Uint8Array.from([cond]), [1]),
    };
    const [yo, ym, yp] = await Promise.all(
      [decodeModel(bytes), masked.model, pruned.model].map((m) => run(m, x)),
    );
    assert.ok(maxDiff(yp.y, ym.y) <= 1e-6, `cond ${cond}: ${maxDiff(yp.y, ym.y)}`);
    assert.ok(maxDiff(yo.y, ym.y) > 1e-4, `cond ${cond}: vacuous`);
  }
});

Deno.test("If: channels only one branch returns are refused naming the If", async () => {
  const bytes = encodeModel(branchedMlp("constant"));
  await assert.rejects(
    () => pruneModel(decodeModel(bytes), { pruningRatio: 0.5, core }),
    (e: Error) => {
      assert.ok(e instanceof PruneError);
      assert.match(e.message, /If node "branches": output "a" carries channels in one branch only/);
      return true;
    },
  );
});

Deno.test("Loop: layers inside a loop body are refused naming the Loop", async () => {
  const info = (name: string, type: number, dims: number[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: { tensorType: { elemType: type, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
    });
  const weights = (name: string, dims: number[], seed: number) =>
    makeTensor(
      name,
      DataType.FLOAT,
      dims,
      float32ToTensorBytes(seededFloats(dims.reduce((a, b) => a * b, 1), seed), DataType.FLOAT),
    );
  const body = onnx.GraphProto.create({
    name: "body",
    node: [
      onnx.NodeProto.create({ opType: "Identity", input: ["cond_in"], output: ["cond_out"] }),
      onnx.NodeProto.create({ opType: "MatMul", input: ["x", "W1"], output: ["h"] }),
      onnx.NodeProto.create({ opType: "Relu", input: ["h"], output: ["r"] }),
      onnx.NodeProto.create({ opType: "MatMul", input: ["r", "W2"], output: ["y_step"] }),
    ],
    input: [info("i", DataType.INT64, []), info("cond_in", DataType.BOOL, [])],
    output: [info("cond_out", DataType.BOOL, []), info("y_step", 1, [4, 8])],
  });
  const graph = onnx.GraphProto.create({
    name: "looped",
    node: [
      onnx.NodeProto.create({
        name: "steps",
        opType: "Loop",
        input: ["M", "go"],
        output: ["y"],
        attribute: [{ name: "body", type: onnx.AttributeProto.AttributeType.GRAPH, g: body }],
      }),
    ],
    initializer: [
      weights("W1", [8, 16], 3),
      weights("W2", [16, 8], 4),
      makeTensor("M", DataType.INT64, [], new Uint8Array(new BigInt64Array([1n]).buffer)),
      makeTensor("go", DataType.BOOL, [], Uint8Array.from([1])),
    ],
    input: [info("x", 1, [4, 8])],
    output: [info("y", 1, [1, 4, 8])],
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph,
  });
  await assert.rejects(
    () => pruneModel(model, { pruningRatio: 0.5, core }),
    (e: Error) => {
      assert.ok(e instanceof PruneError);
      assert.match(e.message, /inside the body of Loop node "steps"/);
      return true;
    },
  );
});
