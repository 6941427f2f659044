/**
 * Sessions for models in memory: a model over protobuf's 2 GiB limit goes to onnxruntime through
 * a temporary file with external data (forced here with a limit of 0 bytes), and gives the
 * outputs of the same model handed over as one buffer; the temporary folder is gone afterwards.
 */
import assert from "node:assert/strict";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { createModelSession, originalAsBuffer } from "../src/runtime/model_session.ts";
import { createSession, loadOrt } from "../src/runtime/ort.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);

/** Runs `f` counting the temporary folders it makes (the file route makes one). */
async function countingFolders<T>(f: () => Promise<T>): Promise<{ value: T; made: number }> {
  const makeTempDir = Deno.makeTempDir;
  let made = 0;
  Deno.makeTempDir = (options) => {
    made++;
    return makeTempDir(options);
  };
  try {
    return { value: await f(), made };
  } finally {
    Deno.makeTempDir = makeTempDir;
  }
}

async function sessionFolders(): Promise<string[]> {
  const dir = Deno.env.get("TMPDIR") || "/tmp";
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith("prune_vit_session_")) names.push(e.name);
  }
  return names.sort();
}

Deno.test("a model too large for one buffer runs from a temporary file with external data", async () => {
  const ort = await loadOrt();
  const bytes = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
  const model = decodeModel(bytes);
  const input = model.graph!.input![0].name!;
  const x = new ort.Tensor(
    "float32",
    Float32Array.from({ length: 2 * 28 * 28 }, (_, i) => Math.sin(i) * 0.5),
    [2, 1, 28, 28],
  );
  const before = await sessionFolders();
  const { value: viaFile, made } = await countingFolders(() =>
    createModelSession(model, {}, "a test", 0)
  );
  assert.equal(made, 1, "the model went through a file");
  assert.deepEqual(await sessionFolders(), before, "the temporary folder is removed");
  const viaBuffer = await createSession(encodeModel(model));
  const [a, b] = [await viaFile.run({ [input]: x }), await viaBuffer.run({ [input]: x })];
  const name = viaBuffer.outputNames[0];
  assert.deepEqual(a[name].data, b[name].data);
  // The model in memory is left as it was (its tensors inline, nothing pointing at the file).
  assert.deepEqual(encodeModel(model), bytes);
});

Deno.test("a model under the limit is handed over as one buffer", async () => {
  const model = decodeModel(await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES)));
  const { value: session, made } = await countingFolders(() => createModelSession(model));
  assert.ok(session.outputNames.length >= 1);
  assert.equal(made, 0, "no temporary copy");
});

Deno.test("the original kept as one buffer: refused past the limit, naming what needs it", async () => {
  const bytes = await Deno.readFile(new URL("fmnist_vit.onnx", FIXTURES));
  const model = decodeModel(bytes);
  assert.deepEqual(originalAsBuffer(model, "distillation (--distill-steps)"), bytes);
  assert.throws(
    () => originalAsBuffer(model, "distillation (--distill-steps)", 1000),
    (e: Error & { code?: string }) =>
      e.code === "too-large" && /distillation \(--distill-steps\)/.test(e.message) &&
      /run without it/.test(e.message),
  );
});
