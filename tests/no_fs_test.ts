/**
 * `prune(bytes)` needs no permission at all: run with no flags (and `--no-prompt`, so nothing
 * can be granted on the way), model bytes on stdin and out on stdout. A feature that needs
 * onnxruntime names itself and the flags instead.
 */
import assert from "node:assert/strict";
import { decodeModel } from "../src/onnx/model_io.ts";
import { staticShapes } from "../src/runtime/static_shapes.ts";
import { tensorDims } from "../src/onnx/tensor.ts";

async function pruneWithNoPermission(model: Uint8Array, options?: object, flags: string[] = []) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      ...flags,
      new URL("./helpers/prune_stdin.ts", import.meta.url).pathname,
      ...(options ? [JSON.stringify(options)] : []),
    ],
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(model);
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  return { code, stdout, stderr: new TextDecoder().decode(stderr) };
}

const fixture = (name: string) => Deno.readFile(new URL(`./fixtures/${name}`, import.meta.url));

Deno.test("prune(bytes) runs with no permission flags at all", async () => {
  const model = await fixture("timm_vit.onnx");
  for (
    const options of [
      undefined, // heads
      { pruneHeadDims: true, headPruningRatio: 0.5, pruningRatio: 0.5, criterion: "l1" },
    ]
  ) {
    const { code, stdout, stderr } = await pruneWithNoPermission(model, options);
    assert.equal(code, 0, stderr);
    assert.equal(stderr, "", "nothing on stderr (no onnxruntime tried)");
    assert.ok(stdout.length < model.length, "the pruned model is smaller");
    // Its shapes work out from the graph: every node's output has dims.
    const pruned = decodeModel(stdout, "stdout");
    const inputs = new Map(
      pruned.graph!.input!.map((i) => [
        i.name!,
        i.type!.tensorType!.shape!.dim!.map((d) => Number(d.dimValue ?? 0) || 1),
      ]),
    );
    const shapes = staticShapes(pruned, inputs);
    for (const node of pruned.graph!.node!) {
      for (const out of node.output!) assert.ok(shapes.has(out), `${out} has a shape`);
    }
    assert.ok(pruned.graph!.initializer!.some((t) => tensorDims(t).length > 0));
  }
});

Deno.test("without permissions, a feature that needs onnxruntime names itself and the flags", async () => {
  const { code, stderr } = await pruneWithNoPermission(await fixture("timm_vit.onnx"), {
    pruningRatio: 0.5,
    verifyRun: true,
  });
  assert.equal(code, 3, stderr);
  assert.match(stderr, /^permission: the run check \(verifyRun, --verify-run\) needs onnxruntime/);
  assert.match(stderr, /--allow-ffi/);
  assert.match(stderr, /--allow-read/);
  assert.doesNotMatch(stderr, /rejects the model/);
});

Deno.test("with --allow-read alone, the run check uses onnxruntime-web", async () => {
  const model = await fixture("timm_vit.onnx");
  const options = { pruningRatio: 0.5, verifyRun: true };
  const { code, stdout, stderr } = await pruneWithNoPermission(model, options, ["--allow-read"]);
  assert.equal(code, 0, stderr);
  assert.ok(stdout.length < model.length);
});
