/**
 * Round-trips every ONNX backend node-test model from Debian's libonnx-testdata through our I/O
 * and checks that onnxruntime gives bit-identical outputs for the original and re-encoded model.
 *
 * Run: `deno test -A tests/libonnx_roundtrip_test.ts`
 */
import assert from "node:assert/strict";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { allTensors } from "../src/onnx/external_data.ts";
import { onnx, type TensorProto, type TypeProto } from "../src/onnx/proto.ts";
import { setTensorRawBytes, tensorDims, tensorRawBytes } from "../src/onnx/tensor.ts";
import {
  compareClose,
  createSession,
  loadOrt,
  ortBackendName,
  type OrtTensor,
  ortTensorsBitwiseEqual,
  ortToFloat64Array,
  tensorProtoToOrt,
} from "../src/runtime/ort.ts";

const DATA = "/usr/share/libonnx-testdata/data/node";

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

const HAVE_DATA = exists(DATA);

function readPbs(dir: string, prefix: string): Uint8Array[] {
  const files: [number, string][] = [];
  for (const e of Deno.readDirSync(dir)) {
    const m = e.name.match(new RegExp(`^${prefix}_(\\d+)\\.pb$`));
    if (m) files.push([Number(m[1]), e.name]);
  }
  files.sort((a, b) => a[0] - b[0]);
  return files.map(([, f]) => Deno.readFileSync(`${dir}/${f}`));
}

function isPlainTensorType(t: TypeProto | null | undefined): boolean {
  if (!t?.tensorType) return false;
  const et = t.tensorType.elemType ?? 0;
  return et !== onnx.TensorProto.DataType.BFLOAT16 && et !== onnx.TensorProto.DataType.COMPLEX64 &&
    et !== onnx.TensorProto.DataType.COMPLEX128 && et < 17;
}

/** Copy of the model with every tensor converted to raw_data storage (exercises tensorRawBytes). */
function normalizeTensors(bytes: Uint8Array): { bytes: Uint8Array; changed: boolean } {
  const model = decodeModel(bytes);
  let changed = false;
  for (const t of allTensors(model)) {
    if (t.dataType === onnx.TensorProto.DataType.STRING) continue;
    if (t.rawData?.length) continue;
    setTensorRawBytes(t, new Uint8Array(tensorRawBytes(t)), tensorDims(t));
    changed = true;
  }
  return { bytes: encodeModel(model), changed };
}

interface Feeds {
  [name: string]: OrtTensor;
}

function bindByName(
  pbs: TensorProto[],
  names: readonly string[],
  what: string,
): [string, TensorProto][] {
  return pbs.map((t, i) => {
    const name = t.name && names.includes(t.name) ? t.name : names[i];
    if (name === undefined) throw new Error(`${what} ${i} has no matching name`);
    return [name, t];
  });
}

Deno.test({
  name: HAVE_DATA
    ? "libonnx-testdata node models: decode→encode round trip; ORT outputs bit-identical"
    : "libonnx-testdata node models (IGNORED: /usr/share/libonnx-testdata not installed)",
  ignore: !HAVE_DATA,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await loadOrt();
    const dirs = [...Deno.readDirSync(DATA)].filter((e) => e.isDirectory).map((e) => e.name)
      .sort();
    const c = {
      models: 0,
      byteIdentical: 0,
      skippedTypes: 0,
      ortLoadFailed: 0,
      ortRunFailed: 0,
      ortDisagreesWithExpected: 0,
      ortVerified: 0,
      roundTripRun: 0,
      normalizedRun: 0,
    };
    const failures: string[] = [];
    const t0 = performance.now();
    for (const name of dirs) {
      const dir = `${DATA}/${name}`;
      let original: Uint8Array;
      try {
        original = Deno.readFileSync(`${dir}/model.onnx`);
      } catch {
        continue;
      }
      c.models++;
      let roundTrip: Uint8Array;
      let model;
      try {
        model = decodeModel(original, `${name}/model.onnx`);
        roundTrip = encodeModel(model);
      } catch (e) {
        failures.push(`${name}: our decode/encode failed: ${e}`);
        continue;
      }
      const identical = roundTrip.length === original.length &&
        roundTrip.every((b, i) => b === original[i]);
      if (identical) c.byteIdentical++;

      const g = model.graph!;
      const initNames = new Set((g.initializer ?? []).map((t) => t.name));
      const ios = [...(g.input ?? []).filter((v) => !initNames.has(v.name)), ...(g.output ?? [])];
      if (!ios.every((v) => isPlainTensorType(v.type))) {
        c.skippedTypes++; // sequence / optional / map / bfloat16 values: no TensorProto loader
        continue;
      }
      const setDir = `${dir}/test_data_set_0`;
      if (!exists(setDir)) {
        c.skippedTypes++;
        continue;
      }
      let session;
      try {
        session = await createSession(original, { logSeverityLevel: 4 });
      } catch {
        c.ortLoadFailed++;
        continue;
      }
      let feeds: Feeds;
      let expected: [string, TensorProto][];
      let outputs: Record<string, OrtTensor>;
      try {
        const ins = readPbs(setDir, "input").map((b) => onnx.TensorProto.decode(b));
        const outs = readPbs(setDir, "output").map((b) => onnx.TensorProto.decode(b));
        feeds = Object.fromEntries(
          bindByName(ins, session.inputNames, "input").map(([n, t]) => [n, tensorProtoToOrt(t)]),
        );
        expected = bindByName(outs, session.outputNames, "output");
        outputs = await session.run(feeds);
      } catch {
        c.ortRunFailed++;
        await session.release();
        continue;
      }
      await session.release();
      const agrees = expected.every(([n, t]) => {
        const got = outputs[n];
        if (!got) return false;
        const want = tensorProtoToOrt(t);
        if (want.type === "string" || got.type === "string") {
          return JSON.stringify(got.data) === JSON.stringify(want.data);
        }
        return got.dims.join() === want.dims.join() &&
          compareClose(ortToFloat64Array(got), ortToFloat64Array(want), 1e-3, 1e-7).ok;
      });
      if (!agrees) {
        c.ortDisagreesWithExpected++;
        continue;
      }
      c.ortVerified++;

      const variants: [string, Uint8Array][] = [];
      if (!identical) variants.push(["round-tripped", roundTrip]);
      const norm = normalizeTensors(original);
      if (norm.changed) variants.push(["raw_data-normalized", norm.bytes]);
      for (const [label, bytes] of variants) {
        if (label === "round-tripped") c.roundTripRun++;
        else c.normalizedRun++;
        try {
          const s2 = await createSession(bytes, { logSeverityLevel: 4 });
          const out2 = await s2.run(feeds);
          await s2.release();
          for (const n of Object.keys(outputs)) {
            if (!out2[n] || !ortTensorsBitwiseEqual(outputs[n], out2[n])) {
              failures.push(`${name}: ${label} model output '${n}' differs from the original's`);
            }
          }
        } catch (e) {
          failures.push(`${name}: ${label} model failed in ORT: ${e}`);
        }
      }
    }
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    console.log(
      `libonnx node models: ${c.models} decoded+encoded, ${c.byteIdentical} byte-identical; ` +
        `ORT (${ortBackendName()}) verified ${c.ortVerified} against expected outputs ` +
        `(${c.ortDisagreesWithExpected} disagree with expected, ${c.ortLoadFailed} not loadable, ` +
        `${c.ortRunFailed} failed to run, ${c.skippedTypes} skipped for non-tensor/unsupported ` +
        `types); re-ran ${c.roundTripRun} non-identical round trips and ${c.normalizedRun} ` +
        `raw_data-normalized models: ${failures.length} failures; ${secs}s`,
    );
    assert.ok(c.models > 0, "no models found");
    assert.deepEqual(failures, []);
  },
});
