/**
 * A stand-in for the fuzz child that misbehaves on purpose, to test the watchdog: case 0 prunes,
 * case 1 hangs, case 2 dies with exit code 3, case 3 holds 600 MB.
 */
import { PREFIX } from "../fuzz/watchdog.ts";

const say = (msg: unknown) =>
  Deno.stdout.writeSync(new TextEncoder().encode(`${PREFIX}${JSON.stringify(msg)}\n`));
say("ready");
let held: Uint8Array | undefined;
let buffer = "";
for await (const chunk of Deno.stdin.readable) {
  buffer += new TextDecoder().decode(chunk);
  let at;
  while ((at = buffer.indexOf("\n")) >= 0) {
    const { n } = JSON.parse(buffer.slice(0, at));
    buffer = buffer.slice(at + 1);
    console.log("a line on stdout that is not an answer");
    say({ start: `mutation of case ${n}`, mode: "heads" });
    if (n === 1) await new Promise(() => setInterval(() => {}, 1000));
    if (n === 2) Deno.exit(3);
    if (n === 3) {
      held = new Uint8Array(600 * 2 ** 20).fill(1);
      await new Promise(() => setInterval(() => {}, 1000));
    }
    say({ kind: "pruned", mutation: `mutation of case ${n}`, mode: "heads", held: held?.length });
  }
}
