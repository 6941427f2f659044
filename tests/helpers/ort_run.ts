/** Runs a model once in onnxruntime on a constant float input of its declared shape. */
import { decodeModel } from "../../src/onnx/model_io.ts";
import { createSession, loadOrt } from "../../src/runtime/ort.ts";

/** The dims of the first output (symbolic input dims are 1). */
export async function runOnce(bytes: Uint8Array): Promise<number[]> {
  const model = decodeModel(bytes);
  const input = model.graph!.input![0];
  const dims = (input.type?.tensorType?.shape?.dim ?? []).map((d) => Number(d.dimValue ?? 0) || 1);
  const ort = await loadOrt();
  const session = await createSession(bytes);
  const n = dims.reduce((a, b) => a * b, 1);
  const out = await session.run({
    [input.name!]: new ort.Tensor("float32", new Float32Array(n).fill(0.1), dims),
  });
  const result = out[session.outputNames[0]];
  const finite = (result.data as Float32Array).every((v) => Number.isFinite(v));
  await session.release();
  if (!finite) throw new Error("the model's output is not finite");
  return [...result.dims];
}
