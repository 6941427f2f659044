/**
 * `prune(bytes)` needs no file system: run it with no read or write permission at all, model
 * bytes on stdin and out on stdout (onnxruntime-node only needs FFI).
 */
import assert from "node:assert/strict";
import { decodeModel } from "../src/onnx/model_io.ts";

Deno.test("prune(bytes) runs with no file-system permission", async () => {
  const model = await Deno.readFile(new URL("./fixtures/timm_vit.onnx", import.meta.url));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-env",
      "--allow-ffi",
      new URL("./helpers/prune_stdin.ts", import.meta.url).pathname,
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
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const pruned = decodeModel(stdout, "stdout");
  assert.ok(stdout.length < model.length, "the pruned model is smaller");
  assert.ok(pruned.graph!.node!.length > 0);
});
