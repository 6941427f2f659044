/**
 * The parse + serialize floor of the scale benchmark: read a model (with its external data) and
 * write it back unchanged, through the same reader and writer the CLI uses.
 *
 *   deno run -A scripts/bench/roundtrip.ts IN.onnx OUT.onnx
 */
import { readModelFile, writeModelFile } from "../../src/onnx/model_io.ts";

const [input, output] = Deno.args;
if (!input || !output) {
  console.error("usage: deno run -A scripts/bench/roundtrip.ts IN.onnx OUT.onnx");
  Deno.exit(2);
}
const model = await readModelFile(input);
await writeModelFile(model, output, { inputPath: input });
