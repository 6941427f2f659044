/**
 * The plain onnxruntime pass a data-aware run is compared with: the model's own outputs over the
 * same calibration samples, batched as the command line batches them, nothing else.
 *
 *   deno run -A scripts/bench/ort_pass.ts MODEL.onnx CALIBRATION_FOLDER SAMPLES [BATCH_SIZE]
 */
import { loadCalibration } from "../../src/calibration/inputs.ts";
import { readModelFile } from "../../src/onnx/model_io.ts";
import { createSession } from "../../src/runtime/ort.ts";

const [path, folder, samples, batchSize] = Deno.args;
const model = await readModelFile(path);
const batches = await loadCalibration({ folder }, model, {
  batchSize: Number(batchSize ?? 32),
  samples: Number(samples),
});
// From the path: onnxruntime reads the file (and its external data beside it) itself.
const session = await createSession(path);
let runs = 0;
for await (const feeds of batches) {
  await session.run(feeds);
  runs++;
}
console.log(JSON.stringify({ runs }));
