/**
 * The watchdog's child: runs fuzz cases one at a time, requests as JSON lines on stdin
 * ({ file, seed, n, strategy }), answers `{ start, mode }` before pruning and the outcome after.
 * The targeted strategy by default; "mutate" runs tests/fuzz_cases.ts (its mutation is named once
 * the case ends, its mode is always "heads").
 */
import { createCore } from "../../src/core/mod.ts";
import { type CaseOutcome, targetedCase } from "./case.ts";
import { fuzzCase } from "../fuzz_cases.ts";
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
    const { file, seed, n, strategy } = JSON.parse(line);
    let s = seeds.get(file);
    if (!s) seeds.set(file, s = await loadSeed(file));
    let outcome: CaseOutcome;
    if (strategy === "mutate") {
      say({ start: `case ${n} of the mutate strategy`, mode: "heads" });
      outcome = { mode: "heads", ...(await fuzzCase(s.bytes, seed, n, s.dimValues)) };
    } else {
      outcome = await targetedCase(s.bytes, seed, n, {
        core,
        dimValues: s.dimValues,
        started: (mutation, mode) => say({ start: mutation, mode }),
      });
    }
    say(outcome);
  }
}
core.dispose();
