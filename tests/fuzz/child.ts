/**
 * The watchdog's child: runs targeted fuzz cases one at a time, requests as JSON lines on stdin
 * ({ file, seed, n }), answers `{ start, mode }` before pruning and the outcome after.
 */
import { createCore } from "../../src/core/mod.ts";
import { targetedCase } from "./case.ts";
import { loadSeed, type Seed } from "./seeds.ts";
import { PREFIX } from "./watchdog.ts";

const core = await createCore({ backend: "cpu" });
const seeds = new Map<string, Seed>();
const encoder = new TextEncoder();
// Protocol lines carry a prefix: anything else a library prints on stdout is not an answer.
const say = (msg: unknown) =>
  Deno.stdout.writeSync(encoder.encode(`${PREFIX}${JSON.stringify(msg)}\n`));

say("ready");
let buffer = "";
const decoder = new TextDecoder();
for await (const chunk of Deno.stdin.readable) {
  buffer += decoder.decode(chunk, { stream: true });
  let at;
  while ((at = buffer.indexOf("\n")) >= 0) {
    const line = buffer.slice(0, at);
    buffer = buffer.slice(at + 1);
    if (!line.trim()) continue;
    const { file, seed, n } = JSON.parse(line);
    let s = seeds.get(file);
    if (!s) seeds.set(file, s = await loadSeed(file));
    const outcome = await targetedCase(s.bytes, seed, n, {
      core,
      dimValues: s.dimValues,
      started: (mutation, mode) => say({ start: mutation, mode }),
    });
    say(outcome);
  }
}
core.dispose();
