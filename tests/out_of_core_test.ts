import assert from "node:assert/strict";
import { encodeModel, readModelFile, writeModelFile } from "../src/onnx/model_io.ts";
import { deferredRawData, tensorDataSize } from "../src/onnx/external_data.ts";
import { pruneModel, type RunOptions } from "../src/prune.ts";
import { pruneToTarget } from "../src/target.ts";
import type { ModelProto } from "../src/onnx/proto.ts";

const FIXTURE = new URL("./fixtures/timm_vit.onnx", import.meta.url).pathname;
const RATIOS: RunOptions = { pruneNumHeads: true, headPruningRatio: 0.5, pruningRatio: 0.5 };

/** The fixture written with its weights in a data file, read back lazily, and read inline. */
async function twoReadings(dir: string): Promise<{ lazy: ModelProto; eager: ModelProto }> {
  const path = `${dir}/model.onnx`;
  await writeModelFile(await readModelFile(FIXTURE), path, { externalData: true });
  return { lazy: await readModelFile(path), eager: await readModelFile(FIXTURE) };
}

function sameBytes(a: ModelProto, b: ModelProto): boolean {
  const [x, y] = [encodeModel(a), encodeModel(b)];
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

Deno.test("a model read from a data file is sliced when written, not before", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { lazy, eager } = await twoReadings(dir);
    const sizes = new Map(lazy.graph!.initializer!.map((t) => [t.name, tensorDataSize(t)]));
    await pruneModel(lazy, RATIOS);
    await pruneModel(eager, RATIOS);
    let cut = 0;
    for (const t of lazy.graph!.initializer!) {
      if (tensorDataSize(t) < 1024) continue; // small tensors stay in the model file
      // Every weight is still produced on demand: nothing model-sized was held.
      const later = deferredRawData(t);
      assert.ok(later, `${t.name} was materialised`);
      if (later.length < (sizes.get(t.name) ?? Infinity)) cut++;
    }
    assert.ok(cut >= 4, `weights were cut (${cut})`);
    assert.ok(sameBytes(lazy, eager), "same model as pruning the inline reading");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("slices of slices: a target run in steps on a lazily read model", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { lazy, eager } = await twoReadings(dir);
    const target = { params: 0.6, steps: 2 };
    const dims: RunOptions = { pruneHeadDims: true, roundTo: 4 };
    const a = await pruneToTarget(lazy, target, dims);
    const b = await pruneToTarget(eager, target, dims);
    assert.deepEqual(a.target, b.target);
    const [first, second] = a.target.steps;
    assert.ok(first.params < a.target.before && second.params < first.params, "both steps cut");
    assert.ok(sameBytes(a.model, b.model), "same model as pruning the inline reading");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
