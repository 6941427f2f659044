/** Reads an ONNX model on stdin, prunes half its heads, writes the pruned model on stdout. */
import { prune } from "../../mod.ts";

const input = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
const { bytes } = await prune(input, {
  pruneNumHeads: true,
  headPruningRatio: 0.5,
  backend: "cpu",
});
await Deno.stdout.write(bytes);
