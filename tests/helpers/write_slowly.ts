/**
 * Writes a model with external data slowly (each tensor takes a few milliseconds to produce), so
 * that a test can stop the process while the temp files exist.
 *
 *   deno run -A tests/helpers/write_slowly.ts <output.onnx>
 */
import { writeModelFile } from "../../src/onnx/model_io.ts";
import { deferRawData } from "../../src/onnx/external_data.ts";
import { DataType, onnx } from "../../src/onnx/proto.ts";

const initializer = Array.from({ length: 2000 }, (_, i) => {
  const t = onnx.TensorProto.create({ name: `w${i}`, dataType: DataType.FLOAT, dims: [1024] });
  deferRawData(t, 4096, () => {
    const until = performance.now() + 5;
    while (performance.now() < until) { /* producing the tensor takes time */ }
    return new Uint8Array(4096).fill(i);
  });
  return t;
});
const model = onnx.ModelProto.create({
  irVersion: 8,
  opsetImport: [{ domain: "", version: 17 }],
  graph: { name: "slow", initializer, output: [{ name: "w0" }] },
});
await writeModelFile(model, Deno.args[0], { externalData: true });
