/**
 * Shapes from the graph alone against one onnxruntime run: the same dims for every tensor of
 * every fixture export, the same values where both know them; an op without a rule falls back to
 * the run.
 */
import assert from "node:assert/strict";
import { decodeModel } from "../src/onnx/model_io.ts";
import { onnx } from "../src/onnx/proto.ts";
import { probeTensors } from "../src/runtime/probe.ts";
import { StaticShapeUnknown } from "../src/runtime/static_shapes.ts";
import { skeleton } from "../src/runtime/skeleton.ts";
import { createSession } from "../src/runtime/ort.ts";
import { encodeModel } from "../src/onnx/model_io.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const files = [
  ...[...Deno.readDirSync(FIXTURES)].map((e) => e.name),
  ...[...Deno.readDirSync(new URL("more/", FIXTURES))].map((e) => `more/${e.name}`),
].filter((f) => f.endsWith(".onnx")).sort();

for (const file of files) {
  Deno.test(`static shapes = onnxruntime's: ${file}`, async () => {
    const model = decodeModel(await Deno.readFile(new URL(file, FIXTURES)));
    const found = await probeTensors(model, { method: "static" });
    const run = await probeTensors(model, { method: "run" });
    assert.equal(found.size, run.size);
    // The skeleton (large weights left out) loads where the model does, and is no larger.
    const bare = encodeModel(skeleton(model));
    const session = await createSession(bare, { graphOptimizationLevel: "disabled" });
    await session.release();
    assert.ok(bare.length <= encodeModel(model).length, `${file}: ${bare.length} bytes`);
    for (const [name, r] of run) {
      const s = found.get(name);
      assert.ok(s, `${file}: "${name}" missing`);
      assert.deepEqual(s.dims, r.dims, `${file}: "${name}"`);
      if (s.values && r.values) {
        s.values.forEach((v, i) => {
          const w = r.values![i];
          assert.ok(v === w || Math.abs(v - w) <= 1e-6 * Math.abs(w), `${file}: "${name}"`);
        });
      }
    }
  });
}

Deno.test("an op without a static rule: refused with its name, and the probe runs it instead", async () => {
  const io = (name: string, dims: number[]) =>
    onnx.ValueInfoProto.create({
      name,
      type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
    });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "g",
      node: [
        onnx.NodeProto.create({
          name: "swap",
          opType: "Einsum",
          input: ["x"],
          output: ["y"],
          attribute: [
            onnx.AttributeProto.create({
              name: "equation",
              type: 3,
              s: new TextEncoder().encode("ij->ji"),
            }),
          ],
        }),
      ],
      input: [io("x", [2, 3])],
      output: [io("y", [3, 2])],
    },
  });
  await assert.rejects(
    () => probeTensors(model, { method: "static" }),
    (e) => e instanceof StaticShapeUnknown && /Einsum "swap": no static rule/.test(e.message),
  );
  const shapes = await probeTensors(model);
  assert.deepEqual(shapes.get("y")?.dims, [3, 2]);
});
