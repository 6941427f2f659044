/**
 * What Deno itself takes to move a model's bytes, no pruning: the floor under the scale
 * benchmark's "ours" rows (scripts/bench/scale.ts runs it beside `cp`).
 *
 *   deno run -A scripts/bench/io_floor.ts whole IN OUT    # Deno.readFile, then write half of it
 *   deno run -A scripts/bench/io_floor.ts stream IN OUT   # read all through one 128 KiB buffer,
 *                                                         # then copy the first half through it
 *
 * `whole` is what any tool that holds a one-file model in memory pays (a fresh buffer of the
 * file's size: its pages are faulted in as the bytes land); `stream` is the least a tool that
 * reads every weight once and writes half of them can pay in this runtime.
 *
 * @module
 */
const [mode, input, output] = Deno.args;
if ((mode !== "whole" && mode !== "stream") || !input || !output) {
  console.error("usage: deno run -A scripts/bench/io_floor.ts whole|stream IN OUT");
  Deno.exit(2);
}
if (mode === "whole") {
  const bytes = await Deno.readFile(input);
  await Deno.writeFile(output, bytes.subarray(0, bytes.length >> 1));
} else {
  const buffer = new Uint8Array(128 << 10);
  let checksum = 0;
  const scan = await Deno.open(input);
  for (let n = scan.readSync(buffer); n; n = scan.readSync(buffer)) checksum ^= buffer[n - 1];
  scan.close();
  const from = await Deno.open(input);
  const to = await Deno.open(output, { write: true, create: true, truncate: true });
  const half = (await from.stat()).size >> 1;
  for (let done = 0; done < half;) {
    const n = from.readSync(buffer.subarray(0, Math.min(buffer.length, half - done)));
    if (!n) break;
    for (let w = 0; w < n;) w += to.writeSync(buffer.subarray(w, n));
    done += n;
  }
  from.close();
  to.close();
  // Keeps the scan from being optimised away.
  if (checksum === 256) console.log(checksum);
}
