/**
 * The single-file writer: the model goes out in pieces (framing buffers, and large tensors'
 * own bytes, not copied) whose concatenation is exactly what the whole-model encoder gives.
 */
import assert from "node:assert/strict";
import {
  decodeModel,
  encodeModel,
  encodeModelPieces,
  type ModelPiece,
} from "../src/onnx/model_io.ts";
import { readModelFile, writeModelFile } from "../src/onnx/model_io.ts";
import { onnx } from "../src/onnx/proto.ts";
import { tensorToFloat32 } from "../src/onnx/tensor.ts";
import { pruneModel } from "../src/prune.ts";
import { createSession, loadOrt, type OrtSession } from "../src/runtime/ort.ts";
import { mulberry32 } from "./seeded_random.ts";
import { gatherAxisNow } from "../src/core/mod.ts";
import { cutStream } from "../src/rewrite/cut_stream.ts";

async function* models(dir: URL): AsyncGenerator<URL> {
  for await (const e of Deno.readDir(dir)) {
    const url = new URL(e.name + (e.isDirectory ? "/" : ""), dir);
    if (e.isDirectory) yield* models(url);
    else if (e.name.endsWith(".onnx")) yield url;
  }
}

function concat(pieces: ModelPiece[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of pieces) {
    const bytes = p instanceof Uint8Array ? p : p.read();
    assert.equal(bytes.length, p.length);
    out.set(bytes, at), at += p.length;
  }
  return out;
}

Deno.test("model pieces concatenate to the encoded model, large tensors not copied", async () => {
  let checked = 0, shared = 0;
  for await (const url of models(new URL("./fixtures/", import.meta.url))) {
    const bytes = await Deno.readFile(url);
    let model;
    try {
      model = decodeModel(bytes, url.pathname);
    } catch {
      continue; // the fixtures of malformed files
    }
    if (model.graph?.initializer?.some((t) => t.dataLocation === 1)) continue;
    const pieces = encodeModelPieces(model);
    assert.deepEqual(concat(pieces), encodeModel(model), url.pathname);
    // Pieces that are views into the file's bytes: the tensors' own raw data.
    shared += pieces.filter((p) => p instanceof Uint8Array && p.buffer === bytes.buffer).length;
    checked++;
  }
  assert.ok(checked >= 6, `${checked} models checked`);
  assert.ok(shared > 0, "some tensors are written from the input's bytes");
});

Deno.test("model pieces: long strings and a tensor built in memory", () => {
  const raw = new Uint8Array(100_000).map((_, i) => i % 251);
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    docString: "d".repeat(5000),
    graph: {
      name: "g",
      node: [{ opType: "Identity", input: ["w"], output: ["y"], name: "n".repeat(300) }],
      initializer: [{ name: "w", dataType: 2, dims: [100_000], rawData: raw }],
      output: [{ name: "y" }],
    },
  });
  const decoded = decodeModel(encodeModel(model));
  const pieces = encodeModelPieces(decoded);
  assert.deepEqual(concat(pieces), encodeModel(decoded));
  assert.ok(pieces.some((p) => p.length === 100_000));
});

Deno.test("writeModelFile writes a single-file model byte for byte as encoded", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const input = new URL("./fixtures/fmnist_vit.onnx", import.meta.url).pathname;
    const model = await readModelFile(input);
    await writeModelFile(model, `${dir}/out.onnx`, { inputPath: input });
    assert.deepEqual(await Deno.readFile(`${dir}/out.onnx`), encodeModel(model));
    assert.deepEqual(await Deno.readFile(`${dir}/out.onnx`), await Deno.readFile(input));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The first output of a model on seeded random input of its declared shape. */
async function outputOf(session: OrtSession, dims: number[]): Promise<Float32Array> {
  const ort = await loadOrt();
  const random = mulberry32(7);
  const x = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => random() - 0.5);
  const out = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", x, dims) });
  return out[session.outputNames[0]].data as Float32Array;
}

const HALF = { pruneNumHeads: true, headPruningRatio: 0.5, pruningRatio: 0.5 };

Deno.test("a pruned single-file model: its cut tensors are cut while written, the file byte for byte the encoded model, and runs as the model sliced before writing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const input = new URL("./fixtures/fmnist_vit.onnx", import.meta.url).pathname;
    const model = await readModelFile(input);
    const { model: pruned } = await pruneModel(model, HALF);
    const lazy = encodeModelPieces(pruned).filter((p) => !(p instanceof Uint8Array));
    assert.ok(lazy.length >= 4, `${lazy.length} tensors cut while written`);
    await writeModelFile(pruned, `${dir}/out.onnx`, { inputPath: input });
    const written = await Deno.readFile(`${dir}/out.onnx`);
    assert.deepEqual(written, encodeModel(pruned));
    assert.ok(written.length < (await Deno.stat(input)).size * 0.8, `${written.length} bytes`);

    // The same pruning with every float weight in float_data: sliced in memory by the compute
    // core before anything is written, and written whole.
    const eager = decodeModel(await Deno.readFile(input));
    for (const t of eager.graph!.initializer!) {
      if (t.dataType !== 1 || !t.rawData?.length) continue;
      t.floatData = [...tensorToFloat32(t)];
      delete (t as { rawData?: Uint8Array }).rawData;
    }
    const { model: eagerPruned } = await pruneModel(eager, HALF);
    assert.equal(
      encodeModelPieces(eagerPruned).filter((p) => !(p instanceof Uint8Array)).length,
      0,
    );
    const dims = [2, 1, 28, 28];
    const a = await outputOf(await createSession(written), dims);
    const b = await outputOf(await createSession(encodeModel(eagerPruned)), dims);
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= 1e-5, `output ${i}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a cut streamed in pieces is the core's gather, for every axis and element size", async () => {
  const random = mulberry32(3);
  const cases: [number[], number, number][] = [
    [[768, 3072], 4, 1], // an MLP weight's output channels: element by element
    [[3072, 768], 4, 0], // its input channels: whole rows
    [[6, 1300, 3], 4, 1], // 12-byte elements: three words each
    [[5, 7, 9], 2, 2],
    [[5, 7, 9], 8, 1],
    [[4, 9, 2], 1, 1],
    [[2000], 4, 0],
    [[3, 2, 600_000], 4, 1], // slices longer than a piece: handed out as views
    [[1, 2_000_000], 4, 1], // one row whose kept part is longer than a piece
  ];
  for (const [dims, size, axis] of cases) {
    const n = dims.reduce((a, b) => a * b, 1) * size;
    const seed = Math.floor(random() * 2 ** 32);
    // Unaligned, as a tensor's bytes inside a model file are.
    const src = new Uint8Array(n + 3).subarray(3);
    for (let i = 0; i < n; i++) src[i] = Math.imul(i ^ seed, 2654435761) >>> 24;
    const kept = Uint32Array.from(
      Array.from({ length: dims[axis] }, (_, i) => i).filter(() => random() < 0.6),
    );
    const parts: Uint8Array[] = [];
    await cutStream(src, dims, size, axis, kept, (b) => {
      parts.push(b.slice()); // a piece is valid until the sink's promise settles
      return Promise.resolve();
    });
    const streamed = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (streamed.set(p, at), at + p.length), 0);
    const expected = gatherAxisNow(src, dims, size, axis, kept);
    assert.equal(streamed.length, expected.length, `${dims} ${axis}`);
    const differs = expected.findIndex((b, i) => b !== streamed[i]);
    assert.equal(differs, -1, `${dims} ${axis}: byte ${differs}`);
  }
  await assert.rejects(
    () => cutStream(new Uint8Array(8), [2], 4, 0, Uint32Array.of(2), () => Promise.resolve()),
    RangeError,
  );
});
