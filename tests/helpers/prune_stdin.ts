/**
 * Reads an ONNX model on stdin, prunes it (half its heads, or the options given as JSON in the
 * first argument), writes the pruned model on stdout; a PruneError's message goes to stderr
 * with exit code 3.
 */
import { prune, PruneError, type RunOptions } from "../../mod.ts";

const options: RunOptions = Deno.args[0]
  ? JSON.parse(Deno.args[0])
  : { pruneNumHeads: true, headPruningRatio: 0.5, backend: "cpu" };
const input = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
try {
  const { bytes } = await prune(input, options);
  await Deno.stdout.write(bytes);
} catch (e) {
  if (!(e instanceof PruneError)) throw e;
  console.error(`${e.code}: ${e.message}`);
  Deno.exit(3);
}
