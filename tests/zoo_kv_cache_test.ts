/**
 * Decoders with a KV cache (scripts/fixtures/zoo/kv_cache.py): heads are pruned through the
 * `past_key_values.*` inputs and `present.*` outputs, whose declared shapes change and are listed
 * in the report. Pruned ≡ masked is checked with the cache fed (past length 3, 2 new tokens) on
 * every output: the pruned model is fed the kept slices of the past, and its presents are
 * compared with the kept slices of the masked model's.
 */
import assert from "node:assert/strict";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import type { ModelProto } from "../src/onnx/proto.ts";
import { pruneModel, type RunOptions } from "../src/prune.ts";
import { createSession, loadOrt, type OrtTensor } from "../src/runtime/ort.ts";
import { probeTensors } from "../src/runtime/probe.ts";
import { createCore } from "../src/core/mod.ts";
import { formatReport } from "../src/format_report.ts";
import { PruneError } from "../src/errors.ts";
import { seededFloats } from "./helpers/onnx_builders.ts";
import { chooseDims } from "../src/runtime/symbolic_dims.ts";

const ZOO = new URL("./fixtures/zoo/", import.meta.url);
const core = await createCore({ backend: "cpu" });
const PAST = 3, NEW = 2;

function read(file: string): Promise<Uint8Array> {
  return Deno.readFile(new URL(file, ZOO));
}

/** Size of a symbolic dim in the test feeds. */
function dimSize(name: string, axis: number, extra: Record<string, number>): number {
  if (extra[name] !== undefined) return extra[name];
  if (axis === 0) return 1;
  if (name.includes("+") || /total/.test(name)) return PAST + NEW;
  return /past/.test(name) ? PAST : NEW;
}

/** Feeds for a decoder step with a cache: ids, a mask over past + new, positions after the past,
 * and seeded random past keys and values. */
async function cacheFeeds(model: ModelProto, extra: Record<string, number> = {}) {
  const ort = await loadOrt();
  const feeds: Record<string, OrtTensor> = {};
  const weights = new Set((model.graph!.initializer ?? []).map((t) => t.name));
  let seed = 1;
  for (const input of model.graph!.input ?? []) {
    const name = input.name!;
    if (weights.has(name)) continue;
    const dims = (input.type?.tensorType?.shape?.dim ?? []).map((d, axis) =>
      d.dimValue ? Number(d.dimValue) : dimSize(d.dimParam ?? "", axis, extra)
    );
    const n = dims.reduce((a, b) => a * b, 1);
    if (input.type?.tensorType?.elemType === 7) {
      const value = (i: number) =>
        /mask/.test(name) ? 1 : /position/.test(name) ? PAST + (i % NEW) : (i * 7) % 50 + 1;
      feeds[name] = new ort.Tensor(
        "int64",
        BigInt64Array.from({ length: n }, (_, i) => BigInt(value(i))),
        dims,
      );
    } else {
      feeds[name] = new ort.Tensor("float32", seededFloats(n, seed++), dims);
    }
  }
  return feeds;
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

async function run(model: ModelProto, feeds: Record<string, OrtTensor>) {
  const session = await createSession(encodeModel(model));
  try {
    return await session.run(feeds);
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

/**
 * Prunes and masks a cached decoder and compares every output: the pruned model reads the kept
 * slices of the past and must give the masked model's logits and the kept slices of its presents.
 */
async function cacheCheck(file: string, options: RunOptions, extra: Record<string, number> = {}) {
  const bytes = await read(file);
  const feeds = await cacheFeeds(decodeModel(bytes), extra);
  const pruned = await pruneModel(decodeModel(bytes), { ...options, core });
  const masked = await pruneModel(decodeModel(bytes), { ...options, core, mask: true });
  const changes = pruned.report.interfaces ?? [];
  const prunedFeeds: Record<string, OrtTensor> = {};
  for (const [name, t] of Object.entries(feeds)) {
    const c = changes.find((x) => x.kind === "input" && x.name === name);
    prunedFeeds[name] = c ? await keep(t, c.kept) : t;
  }
  const original = await run(decodeModel(bytes), feeds);
  const ym = await run(masked.model, feeds);
  const yp = await run(pruned.model, prunedFeeds);
  let difference = 0;
  const outputs = Object.keys(ym);
  for (const name of outputs) {
    const c = changes.find((x) => x.kind === "output" && x.name === name);
    difference = Math.max(
      difference,
      maxDiff(yp[name], c ? await keep(ym[name], c.kept) : ym[name]),
    );
  }
  const effect = maxDiff(original.logits, ym.logits);
  // The pruned model's outputs have the shapes it declares.
  for (const out of pruned.model.graph!.output ?? []) {
    const dims = out.type?.tensorType?.shape?.dim ?? [];
    dims.forEach((d, i) => {
      if (d.dimValue) {
        assert.equal(yp[out.name!].dims[i], Number(d.dimValue), `${out.name} dim ${i}`);
      }
    });
  }
  return { difference, effect, report: pruned.report, outputs, pruned: pruned.model };
}

function declaredDims(model: ModelProto, name: string): (number | string)[] {
  const vi = [...model.graph!.input ?? [], ...model.graph!.output ?? []].find((v) =>
    v.name === name
  );
  return (vi?.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam || Number(d.dimValue));
}

Deno.test("kv cache, Llama MHA: heads pruned through past and present, shapes listed", async () => {
  const r = await cacheCheck("kv_llama_mha.onnx", { pruneNumHeads: true, headPruningRatio: 0.5 });
  assert.ok(r.difference <= 1e-4, `|pruned − masked| ${r.difference}`);
  assert.ok(r.effect > 1e-5, `vacuous: ${r.effect}`);
  assert.ok(r.outputs.includes("present.1.value"));
  const changes = r.report.interfaces ?? [];
  assert.equal(changes.length, 8);
  const past = changes.find((c) => c.name === "past_key_values.0.key")!;
  assert.deepEqual(past.before, ["batch_size", 4, "past_sequence_length", 8]);
  assert.deepEqual(past.after, ["batch_size", 2, "past_sequence_length", 8]);
  assert.equal(past.kept[0].axis, 1);
  assert.equal(past.kept[0].indices.length, 2);
  assert.deepEqual(declaredDims(r.pruned, "present.1.value"), [
    "batch_size",
    2,
    "past_sequence_length + sequence_length",
    8,
  ]);
  const text = formatReport(r.report);
  assert.match(
    text,
    /past_key_values\.0\.key +\[batch_size, 4, past_sequence_length, 8\] → \[batch_size, 2,/,
  );
});

Deno.test("kv cache, Llama MHA: MLP channels leave the cache alone", async () => {
  const r = await cacheCheck("kv_llama_mha.onnx", { pruningRatio: 0.5 });
  assert.ok(r.difference <= 1e-4, `|pruned − masked| ${r.difference}`);
  assert.ok(r.effect > 1e-5);
  assert.equal(r.report.interfaces, undefined);
});

for (const file of ["kv_llama_gqa.onnx", "kv_qwen2_gqa.onnx", "kv_llama_gqa_dynamo.onnx"]) {
  const extra = file.includes("dynamo") ? dynamoMaskDim() : {};
  Deno.test(`kv cache, ${file}: --gqa-policy kv-groups removes whole KV heads and their cache`, async () => {
    const r = await cacheCheck(file, {
      pruneNumHeads: true,
      headPruningRatio: 0.5,
      gqaPolicy: "kv-groups",
    }, await extra);
    assert.ok(r.difference <= 1e-4, `|pruned − masked| ${r.difference}`);
    assert.ok(r.effect > 1e-5);
    for (const b of r.report.blocks.filter((b) => b.kind === "attention")) {
      assert.deepEqual(b.kind === "attention" && b.kvHeads, { before: 2, after: 1 });
      assert.deepEqual(b.kind === "attention" && b.heads, { before: 4, after: 2 });
    }
    const past = r.report.interfaces!.find((c) => c.name === "past_key_values.1.value")!;
    assert.equal(past.after[1], 1);
  });
  Deno.test(`kv cache, ${file}: query heads inside KV groups keep the cache`, async () => {
    const r = await cacheCheck(file, { pruneNumHeads: true, headPruningRatio: 0.5 }, await extra);
    assert.ok(r.difference <= 1e-4, `|pruned − masked| ${r.difference}`);
    assert.ok(r.effect > 1e-5);
    assert.equal(r.report.interfaces, undefined);
  });
}

/** The dynamo exporter names the mask's length (past + new) by a symbol of its own. */
async function dynamoMaskDim(): Promise<Record<string, number>> {
  const model = decodeModel(await read("kv_llama_gqa_dynamo.onnx"));
  const mask = model.graph!.input!.find((i) => i.name === "attention_mask")!;
  const name = mask.type!.tensorType!.shape!.dim![1].dimParam!;
  return { [name]: PAST + NEW };
}

Deno.test("kv cache: default sizes of symbolic dims agree (mask = past + new)", async () => {
  const model = decodeModel(await read("kv_llama_mha.onnx"));
  const shapes = await probeTensors(model);
  const past = shapes.get("past_key_values.0.key")!.dims[2];
  const fresh = shapes.get("input_ids")!.dims[1];
  assert.equal(shapes.get("attention_mask")!.dims[1], past + fresh);
  assert.equal(shapes.get("present.0.key")!.dims[2], past + fresh);
});

Deno.test("kv cache: sizes that cannot agree are refused naming the dims and --dim", async () => {
  const model = decodeModel(await read("kv_llama_mha.onnx"));
  await assert.rejects(
    () => probeTensors(model, { dimValues: { "past_sequence_length + sequence_length": 4 } }),
    (e: Error) => {
      assert.match(e.message, /past_sequence_length=8/);
      assert.match(e.message, /past_sequence_length \+ sequence_length=4/);
      assert.match(e.message, /--dim NAME=N/);
      return true;
    },
  );
});

Deno.test("kv cache: a cache input no output returns keeps its heads, with the reason", async () => {
  // Without the present outputs the past is not a cache the model returns: its heads stay.
  const model = decodeModel(await read("kv_llama_gqa.onnx"));
  model.graph!.output = model.graph!.output!.filter((o) => o.name === "logits");
  const bytes = encodeModel(model);
  await assert.rejects(
    () =>
      pruneModel(decodeModel(bytes), {
        pruneNumHeads: true,
        headPruningRatio: 0.5,
        gqaPolicy: "kv-groups",
        core,
      }),
    (e: Error) => {
      assert.ok(e instanceof PruneError);
      assert.match(e.message, /KV heads: Concat node "[^"]+": concatenated with untracked tensor/);
      return true;
    },
  );
  // Query heads inside the groups do not reach the cache: they still go.
  const r = await pruneModel(decodeModel(bytes), {
    pruneNumHeads: true,
    headPruningRatio: 0.5,
    core,
  });
  assert.equal(r.report.interfaces, undefined);
  assert.ok(r.report.params.after < r.report.params.before);
});

Deno.test("kv cache, GPT-2: MLP channels pruned ≡ masked with the cache fed", async () => {
  const r = await cacheCheck("kv_gpt2.onnx", { pruningRatio: 0.5 });
  assert.ok(r.difference <= 1e-4, `|pruned − masked| ${r.difference}`);
  assert.ok(r.effect > 1e-5);
});

Deno.test("kv cache, GPT-2 (fused c_attn + Split): heads pruned ≡ masked, or refused", async () => {
  // The heads come out of one fused projection by a Split: they prune once a split can select
  // segments of a channel factor; until then the run must refuse, never write a wrong model.
  try {
    const r = await cacheCheck("kv_gpt2.onnx", { pruneNumHeads: true, headPruningRatio: 0.5 });
    assert.ok(r.difference <= 1e-4, `|pruned − masked| ${r.difference}`);
    assert.ok(r.effect > 1e-5);
    assert.ok((r.report.interfaces ?? []).some((c) => c.name === "present.0.key"));
  } catch (e) {
    if (!(e instanceof PruneError)) throw e;
    assert.match(e.message, /no attention block|Split node|cannot be pruned/);
  }
});

Deno.test("symbolic dims: a total length is past + new; sums of names are summed", () => {
  const dims = (...names: string[]) => names.map((n) => ({ dimParam: n }));
  const chosen = chooseDims(
    [
      dims("batch_size", "sequence_length"),
      dims("batch_size", "total_sequence_length"),
      dims("batch_size", "kv_heads_fixed", "past_sequence_length", "head"),
      dims("batch", "past_sequence_length + 1"),
    ],
    { past_sequence_length: 5 },
    1,
    8,
  );
  assert.equal(chosen.get("total_sequence_length")!.size, 13);
  assert.equal(chosen.get("past_sequence_length + 1")!.size, 6);
  assert.equal(chosen.get("batch_size")!.size, 1);
  assert.equal(chosen.get("sequence_length")!.size, 8);
  assert.equal(chosen.get("past_sequence_length")!.how, "given");
});

Deno.test("kv cache, CLI: --json lists the graph inputs and outputs that change", async () => {
  const entry = new URL("../mod.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      entry,
      new URL("kv_llama_gqa.onnx", ZOO).pathname,
      "--prune-num-heads",
      "--head-pruning-ratio",
      "0.5",
      "--gqa-policy",
      "kv-groups",
      "--dry-run",
      "--json",
    ],
    env: { ONNXRUNTIME_NODE_INSTALL: "skip", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const report = JSON.parse(new TextDecoder().decode(out.stdout));
  const names = report.interfaces.map((c: { kind: string; name: string }) => `${c.kind} ${c.name}`);
  assert.equal(names.length, 8);
  assert.ok(names.includes("input past_key_values.0.key"));
  assert.ok(names.includes("output present.1.value"));
  const present = report.interfaces.find((c: { name: string }) => c.name === "present.0.key");
  assert.deepEqual(present.after, ["batch_size", 1, "past_sequence_length + sequence_length", 8]);
});
