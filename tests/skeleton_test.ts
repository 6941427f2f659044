/**
 * One-file models read as a skeleton, their weights left in the file until used
 * (src/onnx/skeleton.ts): the model decoded, pruned (with a data-aware criterion and
 * reweighting), distilled and written must be byte for byte what the model read whole gives.
 */
import assert from "node:assert/strict";
import { decodeModel, encodeModel, readModelFile } from "../src/onnx/model_io.ts";
import { readModelSkeleton } from "../src/onnx/skeleton.ts";
import { deferredRawData } from "../src/onnx/external_data.ts";
import { pruneModel } from "../src/prune.ts";
import { distillModel } from "../src/distill/mod.ts";
import { loadOrt } from "../src/runtime/ort.ts";
import { type ModelProto, onnx } from "../src/onnx/proto.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const ort = await loadOrt();

const path = (file: string) => new URL(file, FIXTURES).pathname;
const whole = async (file: string) => decodeModel(await Deno.readFile(path(file)), file);
/** Every initializer with raw data left in the file (rawFrom 1). */
const skeleton = async (file: string) =>
  (await readModelSkeleton(path(file), (b) => decodeModel(b, file), 1))!;

Deno.test("a skeleton decodes to the model read whole, its initializers read when used", async () => {
  for (
    const file of [
      "fmnist_vit.onnx",
      "timm_vit.onnx",
      "timm_vit_dynamo.onnx",
      "timm_vit_f16.onnx",
      "more/bert.onnx",
      "more/llama_gqa.onnx",
      "more/swin.onnx",
    ]
  ) {
    const model = await skeleton(file);
    const deferred = (model.graph!.initializer ?? []).filter((t) => deferredRawData(t));
    assert.ok(deferred.length > 0, `${file}: nothing left in the file`);
    assert.deepEqual(encodeModel(model), encodeModel(await whole(file)), file);
  }
});

async function fmnistBatches(count: number, size: number) {
  const data = await Deno.readFile(new URL("fmnist_test_1000.bin", FIXTURES));
  const out = [];
  for (let s = 0; s < count; s += size) {
    const x = Float32Array.from(
      data.subarray(16 + s * 784, 16 + (s + size) * 784),
      (p) => (p / 255 - 0.286) / 0.353,
    );
    out.push({ input: new ort.Tensor("float32", x, [size, 1, 28, 28]) });
  }
  return out;
}

Deno.test("pruning, reweighting and distilling a skeleton give the bytes the whole model gives", async () => {
  const calibration = await fmnistBatches(64, 32);
  const teacher = await Deno.readFile(path("fmnist_vit.onnx"));
  const run = async (model: ModelProto) => {
    const { model: pruned } = await pruneModel(model, {
      pruneNumHeads: true,
      headPruningRatio: 0.5,
      pruningRatio: 0.5,
      criterion: "wanda",
      compensation: "reweight",
      calibration,
    });
    const pruneBytes = encodeModel(pruned);
    await distillModel(pruned, teacher, calibration, { steps: 2, batchSize: 16, heldOut: 0 });
    return [pruneBytes, encodeModel(pruned)];
  };
  const [fromWhole, fromSkeleton] = [
    await run(await whole("fmnist_vit.onnx")),
    await run(await skeleton("fmnist_vit.onnx")),
  ];
  assert.deepEqual(fromSkeleton[0], fromWhole[0], "pruned and reweighted");
  assert.deepEqual(fromSkeleton[1], fromWhole[1], "then distilled");
});

Deno.test("a damaged one-file model: truncated is an error naming the file, odd layouts read whole", async () => {
  const bytes = await Deno.readFile(path("fmnist_vit.onnx"));
  const dir = await Deno.makeTempDir();
  try {
    const cut = `${dir}/cut.onnx`;
    await Deno.writeFile(cut, bytes.subarray(0, bytes.length - 1000));
    await assert.rejects(
      () => readModelSkeleton(cut, (b) => decodeModel(b, cut), 1),
      (e: Error) => e.message.includes(cut) && /truncated/.test(e.message),
    );
    // A second graph field (protobuf merges them): not laid out as expected, so no skeleton.
    const graph = decodeModel(bytes).graph!;
    const extra = encodeModel({ irVersion: 8, graph: { name: graph.name } } as ModelProto);
    const twice = `${dir}/twice.onnx`;
    await Deno.writeFile(twice, new Uint8Array([...bytes, ...extra.subarray(2)]));
    assert.equal(await readModelSkeleton(twice, (b) => decodeModel(b, twice), 1), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readModelFile reads a one-file model of 32 MiB or more as a skeleton", async () => {
  const model = await whole("fmnist_vit.onnx");
  // An unused 36 MB initializer takes the file past the threshold.
  model.graph!.initializer!.push(onnx.TensorProto.create({
    name: "unused_padding",
    dataType: 1,
    dims: [9_000_000],
    rawData: new Uint8Array(36_000_000).fill(7),
  }));
  const dir = await Deno.makeTempDir();
  try {
    const big = `${dir}/big.onnx`;
    await Deno.writeFile(big, encodeModel(model));
    const read = await readModelFile(big);
    const deferred = read.graph!.initializer!.filter((t) => deferredRawData(t));
    assert.ok(deferred.some((t) => t.name === "unused_padding"));
    const options = { pruneNumHeads: true, headPruningRatio: 0.5, pruningRatio: 0.5 };
    const [a, b] = [
      await pruneModel(read, options),
      await pruneModel(decodeModel(await Deno.readFile(big)), options),
    ];
    assert.deepEqual(encodeModel(a.model), encodeModel(b.model));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a skeleton's tensor whose data does not fill its dims is refused as a whole read is", async () => {
  const model = await whole("fmnist_vit.onnx");
  const t = model.graph!.initializer!.find((t) => (t.rawData?.length ?? 0) > 100_000)!;
  t.dims = [Number(t.dims![0]) + 1, ...t.dims!.slice(1)];
  const dir = await Deno.makeTempDir();
  try {
    const bad = `${dir}/bad.onnx`;
    await Deno.writeFile(bad, encodeModel(model));
    const options = { pruningRatio: 0.5 };
    const fromWhole = await pruneModel(decodeModel(await Deno.readFile(bad)), options).then(
      () => "no error",
      (e: Error) => e.message,
    );
    assert.match(fromWhole, new RegExp(t.name!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    const skeletonModel = (await readModelSkeleton(bad, (b) => decodeModel(b, bad), 1))!;
    await assert.rejects(() => pruneModel(skeletonModel, options), { message: fromWhole });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
