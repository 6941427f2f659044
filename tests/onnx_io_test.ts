import assert from "node:assert/strict";
import { PruneError } from "../src/errors.ts";
import {
  type AttributeProto,
  DataType,
  knownFieldNumbers,
  type ModelProto,
  onnx,
  scanWire,
  type TensorProto,
  toBigInt,
  toNumber,
  UNKNOWN_FIELDS,
  unknownFieldWarnings,
  type WithUnknown,
} from "../src/onnx/proto.ts";
import {
  bf16BitsToF32,
  elementSize,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  float32ToTensorBytes,
  isFloatType,
  makeTensor,
  numbersToTensorBytes,
  setTensorRawBytes,
  tensorDims,
  tensorRawBytes,
  tensorToFloat32,
  tensorToNumbers,
} from "../src/onnx/tensor.ts";
import { decodeModel, encodeModel, readModelFile, writeModelFile } from "../src/onnx/model_io.ts";
import { EXTERNAL_ORIGIN, type TensorWithOrigin } from "../src/onnx/external_data.ts";
import { buildAttributeModel, buildMlpModel, seededBytes } from "./helpers/onnx_builders.ts";

const enc = (m: ModelProto) => encodeModel(m);
const bytesEqual = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

async function rejectsWith(p: Promise<unknown>, code: string, ...parts: (string | RegExp)[]) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PruneError, `expected PruneError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const part of parts) {
      if (typeof part === "string") assert.ok(e.message.includes(part), e.message);
      else assert.match(e.message, part);
    }
    return true;
  });
}

function throwsWith(fn: () => unknown, code: string, ...parts: string[]) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PruneError, `expected PruneError, got ${e}`);
    assert.equal(e.code, code, e.message);
    for (const part of parts) assert.ok(e.message.includes(part), e.message);
    return true;
  });
}

function withTempDir(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = await Deno.makeTempDir({ prefix: "prune-vit-io-" });
    try {
      await fn(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  };
}

function initializer(m: ModelProto, name: string): TensorProto {
  const t = m.graph!.initializer!.find((t) => t.name === name);
  assert.ok(t, `initializer ${name}`);
  return t;
}

// ---------------------------------------------------------------------------------------------
// Round trips

Deno.test("round trip: built models re-encode byte-identically and keep all content", () => {
  for (const build of [buildMlpModel, buildAttributeModel]) {
    const bytes = enc(build());
    const m = decodeModel(bytes, "built.onnx");
    assert.ok(bytesEqual(enc(m), bytes));
    // decoded twice → same
    assert.ok(bytesEqual(enc(decodeModel(enc(m))), bytes));
  }
  const m = decodeModel(enc(buildMlpModel()));
  assert.equal(toNumber(m.irVersion), 8);
  assert.equal(toNumber(m.modelVersion), 3);
  assert.equal(m.producerName, "prune-vit-tests");
  assert.deepEqual(m.metadataProps!.map((p) => [p.key, p.value]), [["author", "tests"], [
    "ünïcode",
    "✓",
  ]]);
  assert.deepEqual(m.opsetImport!.map((o) => [o.domain, toNumber(o.version)]), [["", 17], [
    "test.local",
    1,
  ]]);
  assert.deepEqual(m.graph!.node!.map((n) => n.name), [
    "matmul",
    "add",
    "const_c",
    "mul",
    "reshape",
  ]);
  assert.equal(m.graph!.node![0].docString, "first");
  assert.equal(m.functions![0].name, "Twice");
  assert.equal(m.graph!.valueInfo![0].name, "h");
  assert.equal(m.graph!.input![0].type!.tensorType!.shape!.dim![0].dimParam, "batch");
  assert.equal(initializer(m, "W").docString, "weight matrix");
});

Deno.test("round trip: attributes incl. int64 beyond 2^32, floats/ints written unpacked", () => {
  const bytes = enc(buildAttributeModel());
  const m = decodeModel(bytes);
  const attrs: Record<string, AttributeProto> = Object.fromEntries(
    m.graph!.node![0].attribute!.map((a) => [a.name ?? "", a]),
  );
  assert.equal(attrs.f.f, 1.5);
  assert.equal(toNumber(attrs.i.i), -3);
  assert.equal(toNumber(attrs.big.i), 2 ** 40 + 1);
  assert.deepEqual(attrs.ints.ints!.map((v) => toNumber(v)), [1, -2, 2 ** 33]);
  assert.deepEqual(attrs.floats.floats, [0.25, -1, 3]);
  assert.equal(new TextDecoder().decode(attrs.s.s!), "hello");
  assert.equal(attrs.g.g!.node![0].opType, "Identity");
  assert.deepEqual(tensorToNumbers(attrs.t.t!), [7, -8]);
  // proto2 (unpacked) encoding: the attribute 'ints' has three separate field-8 varints.
  const attrBytes = onnx.AttributeProto.encode(attrs.ints).finish();
  assert.deepEqual(
    scanWire(attrBytes).fields.filter(([f]) => f === 8).map(([, wt]) => wt),
    [0, 0, 0],
  );
  // Packed input (as written by other tools) is still read.
  const w = onnx.TensorProto.encode({ dataType: 1 }).finish();
  const packedDims = new Uint8Array([0x0a, 0x02, 0x02, 0x03, ...w]);
  assert.deepEqual(tensorDims(onnx.TensorProto.decode(packedDims)), [2, 3]);
});

Deno.test("unknown fields (newer than IR 8) are preserved verbatim and reported", () => {
  assert.deepEqual([...knownFieldNumbers(onnx.NodeProto)].sort((a, b) => a - b), [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
  ]);
  const m = decodeModel(enc(buildMlpModel()));
  // NodeProto.metadata_props (field 9, IR 10): a StringStringEntryProto {key:"k", value:"v"}.
  const entry = onnx.StringStringEntryProto.encode({ key: "k", value: "v" }).finish();
  const nodeField9 = new Uint8Array([0x4a, entry.length, ...entry]);
  // TensorProto.metadata_props (field 16): tag = 16<<3|2 = 130 → varint 0x82 0x01.
  const tensorField16 = new Uint8Array([0x82, 0x01, entry.length, ...entry]);
  // ModelProto.configuration (field 26) with empty payload.
  const modelField26 = new Uint8Array([0xd2, 0x01, 0x00]);
  (m.graph!.node![1] as WithUnknown)[UNKNOWN_FIELDS] = [nodeField9];
  (initializer(m, "W") as WithUnknown)[UNKNOWN_FIELDS] = [tensorField16];
  (m as WithUnknown)[UNKNOWN_FIELDS] = [modelField26];
  const withUnknown = enc(m);
  const m2 = decodeModel(withUnknown);
  assert.deepEqual((m2.graph!.node![1] as WithUnknown)[UNKNOWN_FIELDS], [nodeField9]);
  assert.deepEqual((initializer(m2, "W") as WithUnknown)[UNKNOWN_FIELDS], [tensorField16]);
  assert.ok(bytesEqual(enc(m2), withUnknown), "re-encode keeps unknown fields");
  const warnings = unknownFieldWarnings(m2);
  assert.equal(warnings.length, 3, warnings.join("\n"));
  assert.ok(warnings.some((w) => w.includes("'add'") && w.includes("9 metadata_props")));
  assert.ok(warnings.some((w) => w.includes("'W'") && w.includes("16 metadata_props")));
  assert.ok(warnings.some((w) => w.includes("26 configuration")));
  assert.deepEqual(unknownFieldWarnings(decodeModel(enc(buildMlpModel()))), []);
});

// ---------------------------------------------------------------------------------------------
// Typed storage and conversions

Deno.test("typed-field storage is read correctly", () => {
  const roundTrip = (t: TensorProto) =>
    onnx.TensorProto.decode(onnx.TensorProto.encode(t).finish());
  const f = roundTrip({ name: "f", dataType: DataType.FLOAT, dims: [3], floatData: [1, -2.5, 3] });
  assert.deepEqual([...tensorToFloat32(f)], [1, -2.5, 3]);
  assert.deepEqual([...new Float32Array(new Uint8Array(tensorRawBytes(f)).buffer)], [1, -2.5, 3]);

  const h = roundTrip({
    name: "h",
    dataType: DataType.FLOAT16,
    dims: [4],
    int32Data: [0x3c00, 0xc000, 0x7bff, 0x0001],
  });
  assert.deepEqual([...tensorToFloat32(h)], [1, -2, 65504, 2 ** -24]);
  assert.deepEqual([...tensorRawBytes(h)], [0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00]);

  const bf = roundTrip({
    name: "bf",
    dataType: DataType.BFLOAT16,
    dims: [2],
    int32Data: [0x3f80, 0xc040],
  });
  assert.deepEqual([...tensorToFloat32(bf)], [1, -3]);

  const big = 2n ** 40n + 5n;
  const i64 = roundTrip({
    name: "i64",
    dataType: DataType.INT64,
    dims: [2, 2],
    int64Data: [-1, 2 ** 40 + 5, 0, -(2 ** 35)],
  });
  assert.ok(typeof i64.int64Data![1] === "object", "int64 decodes as Long");
  assert.equal(toBigInt(i64.int64Data![1]), big);
  assert.deepEqual(tensorToNumbers(i64), [-1, 2 ** 40 + 5, 0, -(2 ** 35)]);
  assert.deepEqual(tensorDims(i64), [2, 2]);
  const view = new DataView(new Uint8Array(tensorRawBytes(i64)).buffer);
  assert.equal(view.getBigInt64(8, true), big);

  const i8 = roundTrip({
    name: "i8",
    dataType: DataType.INT8,
    dims: [3],
    int32Data: [-1, 127, -128],
  });
  assert.deepEqual(tensorToNumbers(i8), [-1, 127, -128]);
  const b = roundTrip({ name: "b", dataType: DataType.BOOL, dims: [3], int32Data: [1, 0, 1] });
  assert.deepEqual([...tensorRawBytes(b)], [1, 0, 1]);
  const u32 = roundTrip({
    name: "u32",
    dataType: DataType.UINT32,
    dims: [2],
    uint64Data: [4294967295, 7],
  });
  assert.deepEqual(tensorToNumbers(u32), [4294967295, 7]);
  const d = roundTrip({
    name: "d",
    dataType: DataType.DOUBLE,
    dims: [2],
    doubleData: [0.1, -1e300],
  });
  assert.deepEqual(tensorToNumbers(d), [0.1, -1e300]);
  const scalar = roundTrip({ name: "s", dataType: DataType.INT32, int32Data: [42] });
  assert.deepEqual(tensorToNumbers(scalar), [42]);

  // raw_data is returned as a view into the decoded buffer
  const raw = roundTrip(makeTensor("r", DataType.FLOAT, [2], new Uint8Array(8)));
  assert.equal(tensorRawBytes(raw).buffer, raw.rawData!.buffer);

  throwsWith(
    () => tensorRawBytes({ name: "short", dataType: DataType.FLOAT, dims: [3], floatData: [1] }),
    "bad-tensor",
    "'short'",
  );
  throwsWith(() => elementSize(DataType.STRING), "unsupported-dtype", "STRING");
  assert.ok(isFloatType(DataType.BFLOAT16) && !isFloatType(DataType.INT64));
});

Deno.test("setTensorRawBytes / makeTensor / numbersToTensorBytes", () => {
  const t: TensorProto = onnx.TensorProto.create({
    name: "keep",
    dataType: DataType.FLOAT,
    docString: "doc",
    dims: [2],
    floatData: [1, 2],
  });
  setTensorRawBytes(t, float32ToTensorBytes(new Float32Array([3, 4, 5]), DataType.FLOAT), [3]);
  const back = onnx.TensorProto.decode(onnx.TensorProto.encode(t).finish());
  assert.equal(back.name, "keep");
  assert.equal(back.docString, "doc");
  assert.equal(back.dataType, DataType.FLOAT);
  assert.deepEqual(back.floatData, []);
  assert.deepEqual([...tensorToFloat32(back)], [3, 4, 5]);
  throwsWith(() => setTensorRawBytes(t, new Uint8Array(5), [2]), "bad-tensor", "'keep'");
  const shape = makeTensor(
    "shape",
    DataType.INT64,
    [3],
    numbersToTensorBytes([1, -1, 768], DataType.INT64),
  );
  assert.deepEqual(tensorToNumbers(shape), [1, -1, 768]);
  const i32 = makeTensor("i", DataType.INT32, [2], numbersToTensorBytes([-5, 9], DataType.INT32));
  assert.deepEqual(tensorToNumbers(i32), [-5, 9]);
  throwsWith(() => toNumber({ low: 0, high: 0x7fffffff, unsigned: false }), "int-overflow");
});

Deno.test("float16 conversion: exhaustive round trip and rounding edge cases", () => {
  for (let b = 0; b < 0x10000; b++) {
    const v = f16BitsToF32(b);
    if (Number.isNaN(v)) {
      assert.ok((f32ToF16Bits(v) & 0x7c00) === 0x7c00 && (f32ToF16Bits(v) & 0x3ff) !== 0);
      continue;
    }
    if (f32ToF16Bits(v) !== b) {
      assert.fail(`f16 bits ${b.toString(16)} → ${v} → ${f32ToF16Bits(v)}`);
    }
  }
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [65504, 0x7bff], // max finite
    [65519.99, 0x7bff], // below the halfway point to 65536
    [65520, 0x7c00], // halfway → ties to even → Infinity
    [1e6, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // min normal
    [2 ** -24, 0x0001], // min subnormal
    [2 ** -25, 0x0000], // halfway between 0 and min subnormal → even (0)
    [2 ** -25 * 1.0001, 0x0001],
    [3 * 2 ** -25, 0x0002], // 1.5 ulp → ties to even (2)
    [5 * 2 ** -25, 0x0002], // 2.5 ulp → 2
    [1 + 2 ** -11, 0x3c00], // tie between 1 and 1+2^-10 → 1 (even)
    [1 + 3 * 2 ** -11, 0x3c02], // tie → 1+2^-9 (even mantissa)
    [2 ** -14 - 2 ** -25, 0x0400], // rounds up from subnormal into min normal
    [1e-10, 0x0000],
    [-1e-10, 0x8000],
  ];
  for (const [v, bits] of cases) assert.equal(f32ToF16Bits(v), bits, `f16(${v})`);
  assert.equal(f32ToF16Bits(NaN), 0x7e00);
  assert.ok(Number.isNaN(f16BitsToF32(0x7e00)));
  assert.equal(f16BitsToF32(0xfbff), -65504);
  assert.equal(f16BitsToF32(0x8001), -(2 ** -24));
});

Deno.test("bfloat16 conversion: exhaustive round trip and rounding edge cases", () => {
  for (let b = 0; b < 0x10000; b++) {
    const v = bf16BitsToF32(b);
    if (Number.isNaN(v)) {
      assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(v))));
      continue;
    }
    if (f32ToBf16Bits(v) !== b) assert.fail(`bf16 bits ${b.toString(16)}`);
  }
  const cases: [number, number][] = [
    [1, 0x3f80],
    [1 + 2 ** -8, 0x3f80], // tie → even
    [1 + 3 * 2 ** -8, 0x3f82], // tie → even (up)
    [1 + 2 ** -8 + 2 ** -20, 0x3f81],
    [-2, 0xc000],
    [3.3895313892515355e38, 0x7f7f], // max finite bf16
    [3.4028234663852886e38, 0x7f80], // float32 max rounds to Infinity
    [Infinity, 0x7f80],
    [2 ** -133, 0x0001], // min bf16 subnormal
  ];
  for (const [v, bits] of cases) assert.equal(f32ToBf16Bits(v), bits, `bf16(${v})`);
  assert.equal(f32ToBf16Bits(NaN), 0x7fc0);
  const t = makeTensor(
    "bf",
    DataType.BFLOAT16,
    [3],
    float32ToTensorBytes(new Float32Array([1, 1 + 2 ** -8, -0]), DataType.BFLOAT16),
  );
  assert.deepEqual([...tensorToFloat32(t)], [1, 1, -0]);
});

// ---------------------------------------------------------------------------------------------
// decodeModel errors

Deno.test("decodeModel: helpful errors for non-models", () => {
  throwsWith(() => decodeModel(new Uint8Array(), "empty.onnx"), "not-onnx", "empty.onnx", "empty");
  throwsWith(() => decodeModel(seededBytes(4096), "random.bin"), "not-onnx", "random.bin");
  throwsWith(
    () => decodeModel(new TextEncoder().encode("<html>404</html>"), "page.onnx"),
    "not-onnx",
  );
  const real = enc(buildMlpModel());
  for (const cut of [real.length - 1, Math.floor(real.length / 2), 40]) {
    throwsWith(() => decodeModel(real.subarray(0, cut), "cut.onnx"), "truncated", "cut.onnx");
  }
  const tensorPb = onnx.TensorProto.encode(
    makeTensor("input_0", DataType.FLOAT, [2, 3], new Uint8Array(24)),
  ).finish();
  throwsWith(() => decodeModel(tensorPb, "input_0.pb"), "not-onnx", "input_0.pb", "TensorProto");
  const noGraph = onnx.ModelProto.encode({ irVersion: 8, opsetImport: [{ version: 17 }] }).finish();
  throwsWith(() => decodeModel(noGraph, "nograph.onnx"), "not-onnx", "no graph");
  const noIr = onnx.ModelProto.encode({ graph: { name: "g" }, opsetImport: [{ version: 17 }] })
    .finish();
  throwsWith(() => decodeModel(noIr, "noir.onnx"), "not-onnx", "ir_version");
  const noOpset = onnx.ModelProto.encode({ irVersion: 8, graph: { name: "g" } }).finish();
  throwsWith(() => decodeModel(noOpset, "noopset.onnx"), "not-onnx", "opset_import");
});

Deno.test("readModelFile: missing file", async () => {
  await rejectsWith(readModelFile("/nonexistent/dir/model.onnx"), "not-found", "model.onnx");
});

// ---------------------------------------------------------------------------------------------
// Files and external data

/** The one data file written for `model` in `dir`: `<model>.<hash of the data>.data`. */
function dataFileOf(dir: string, model: string): string {
  const found = [...Deno.readDirSync(dir)].map((e) => e.name)
    .filter((n) => n.startsWith(`${model}.`) && /\.[0-9a-f]{16}\.data$/.test(n));
  assert.equal(found.length, 1, `one data file of ${model}: ${found}`);
  return found[0];
}

Deno.test(
  "write/read inline and with external data",
  withTempDir(async (dir) => {
    const model = buildMlpModel(64, 64); // W = 16 KiB, b = 256 B
    await writeModelFile(model, `${dir}/inline.onnx`);
    const inline = await readModelFile(`${dir}/inline.onnx`);
    assert.ok(bytesEqual(enc(inline), enc(model)));

    await writeModelFile(model, `${dir}/ext.onnx`, { externalData: { sizeThreshold: 100 } });
    assert.ok(bytesEqual(enc(model), enc(buildMlpModel(64, 64))), "caller's model unchanged");
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    const extData = dataFileOf(dir, "ext.onnx");
    assert.deepEqual(names, ["ext.onnx", extData, "inline.onnx"]);
    const modelSize = Deno.statSync(`${dir}/ext.onnx`).size;
    assert.ok(modelSize < 4096, `weights went to the data file (model is ${modelSize} B)`);
    const rawExt = decodeModel(Deno.readFileSync(`${dir}/ext.onnx`));
    const w = initializer(rawExt, "W");
    assert.equal(w.dataLocation, onnx.TensorProto.DataLocation.EXTERNAL);
    assert.deepEqual(
      w.externalData!.map((e) => [e.key, e.value]),
      [["location", extData], ["offset", "0"], ["length", String(64 * 64 * 4)]],
    );
    const b = initializer(rawExt, "b");
    assert.equal(Number(b.externalData!.find((e) => e.key === "offset")!.value) % 64, 0);
    assert.equal(initializer(rawExt, "shape").dataLocation ?? 0, 0, "small tensor stays inline");

    const back = await readModelFile(`${dir}/ext.onnx`);
    assert.ok(bytesEqual(enc(back), enc(model)), "read back equals the original (inline)");
    assert.equal(
      (initializer(back, "W") as TensorWithOrigin)[EXTERNAL_ORIGIN]!.location,
      extData,
    );

    // Default for a model that came with external data: external again.
    await writeModelFile(back, `${dir}/again.onnx`, { inputPath: `${dir}/ext.onnx` });
    // The data file is named after its content: the same data, the same name.
    assert.equal(dataFileOf(dir, "again.onnx"), extData.replace("ext.onnx", "again.onnx"));
    assert.ok(bytesEqual(enc(await readModelFile(`${dir}/again.onnx`)), enc(model)));
    // Explicit custom location and inline override.
    await writeModelFile(back, `${dir}/custom.onnx`, { externalData: { location: "weights.bin" } });
    assert.ok(Deno.statSync(`${dir}/weights.bin`).isFile);
    await writeModelFile(back, `${dir}/flat.onnx`, { externalData: false });
    assert.ok(bytesEqual(Deno.readFileSync(`${dir}/flat.onnx`), enc(model)));
  }),
);

async function writeExternalModel(dir: string, location: string): Promise<string> {
  const model = buildMlpModel();
  const w = initializer(model, "W");
  const n = w.rawData!.length;
  delete w.rawData;
  w.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
  w.externalData = [{ key: "location", value: location }, { key: "length", value: String(n) }];
  const path = `${dir}/model.onnx`;
  await Deno.writeFile(path, enc(model));
  return path;
}

Deno.test(
  "external data: refuses ../, absolute paths and symlinks escaping the folder",
  withTempDir(async (root) => {
    const dir = `${root}/models`;
    const outside = `${root}/outside`;
    await Deno.mkdir(dir);
    await Deno.mkdir(outside);
    await Deno.writeFile(`${outside}/secret.bin`, new Uint8Array(16 * 32 * 4));

    let path = await writeExternalModel(dir, "../outside/secret.bin");
    await rejectsWith(
      readModelFile(path),
      "unsafe-external-data",
      "'W'",
      "../outside/secret.bin",
      "..",
    );

    path = await writeExternalModel(dir, `${outside}/secret.bin`);
    await rejectsWith(readModelFile(path), "unsafe-external-data", "'W'", "absolute");

    path = await writeExternalModel(dir, "sub/..\\..\\outside/secret.bin");
    await rejectsWith(readModelFile(path), "unsafe-external-data", "'W'");

    await Deno.symlink(`${outside}/secret.bin`, `${dir}/link.bin`);
    path = await writeExternalModel(dir, "link.bin");
    await rejectsWith(readModelFile(path), "unsafe-external-data", "'W'", "link.bin", "outside");

    await Deno.symlink(outside, `${dir}/linkdir`);
    path = await writeExternalModel(dir, "linkdir/secret.bin");
    await rejectsWith(readModelFile(path), "unsafe-external-data", "'W'", "linkdir/secret.bin");

    path = await writeExternalModel(dir, "missing.bin");
    await rejectsWith(readModelFile(path), "not-found", "'W'", "missing.bin");

    await Deno.writeFile(`${dir}/short.bin`, new Uint8Array(10));
    path = await writeExternalModel(dir, "short.bin");
    await rejectsWith(readModelFile(path), "truncated", "'W'", "short.bin");

    // A symlink that stays inside the folder is fine.
    await Deno.writeFile(`${dir}/real.bin`, new Uint8Array(16 * 32 * 4).fill(1));
    await Deno.symlink(`${dir}/real.bin`, `${dir}/inside-link.bin`);
    path = await writeExternalModel(dir, "inside-link.bin");
    const m = await readModelFile(path);
    assert.equal(tensorRawBytes(initializer(m, "W"))[0], 1);
  }),
);

Deno.test(
  "writer refuses to overwrite the input model or its external data",
  withTempDir(async (dir) => {
    const model = buildMlpModel();
    const input = `${dir}/in.onnx`;
    await writeModelFile(model, input, { externalData: { sizeThreshold: 100 } });
    const before = Deno.readFileSync(input);
    const m = await readModelFile(input);
    await rejectsWith(writeModelFile(m, input, { inputPath: input }), "would-overwrite-input");
    await Deno.symlink(input, `${dir}/alias.onnx`);
    await rejectsWith(
      writeModelFile(m, `${dir}/alias.onnx`, { inputPath: input }),
      "would-overwrite-input",
    );
    await rejectsWith(writeModelFile(m, `${dir}/./in.onnx`), "would-overwrite-input");
    await rejectsWith(
      writeModelFile(m, `${dir}/./in.onnx`, { externalData: false }),
      "would-overwrite-input",
      "read from",
    );
    // Output data file would be the input's data file.
    const inData = dataFileOf(dir, "in.onnx");
    await rejectsWith(
      writeModelFile(m, `${dir}/out.onnx`, { externalData: { location: inData } }),
      "would-overwrite-input",
      inData,
    );
    // Writing the data file over the input model.
    await rejectsWith(
      writeModelFile(m, `${dir}/out.onnx`, {
        inputPath: input,
        externalData: { location: "in.onnx" },
      }),
      "would-overwrite-input",
    );
    assert.ok(bytesEqual(Deno.readFileSync(input), before));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "alias.onnx",
      "in.onnx",
      inData,
    ]);
  }),
);

Deno.test(
  "failed writes leave no partial or temp files",
  withTempDir(async (dir) => {
    const model = buildMlpModel();
    await Deno.mkdir(`${dir}/taken.onnx`); // a directory where the output should go
    await rejectsWith(writeModelFile(model, `${dir}/taken.onnx`), "unwritable", "taken.onnx");
    await rejectsWith(
      writeModelFile(model, `${dir}/taken.onnx`, { externalData: true }),
      "unwritable",
    );
    await rejectsWith(writeModelFile(model, `${dir}/nope/out.onnx`), "not-found", "nope");
    if (Deno.uid() !== 0) {
      await Deno.mkdir(`${dir}/ro`);
      await Deno.chmod(`${dir}/ro`, 0o555);
      await rejectsWith(writeModelFile(model, `${dir}/ro/out.onnx`), "unwritable");
      await Deno.chmod(`${dir}/ro`, 0o755);
      assert.deepEqual([...Deno.readDirSync(`${dir}/ro`)], []);
    }
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n !== "ro");
    assert.deepEqual(left, ["taken.onnx"], `left behind: ${left}`);
    assert.deepEqual([...Deno.readDirSync(`${dir}/taken.onnx`)], []);
  }),
);
