/**
 * Bounded run of the targeted fuzz strategy (the long run: `scripts/fuzz.ts --strategy targeted`):
 * wire-level varint edits, data type swaps, shape-constant and integer-attribute edits, removed
 * and bypassed nodes, over one seed export of every class, each case under the watchdog. Every
 * case ends in a pruned model onnxruntime runs, or a PruneError — nothing else. And the watchdog
 * itself: hangs, crashes and memory overruns become findings that name the case.
 */
import assert from "node:assert/strict";
import { SEEDS } from "./fuzz/seeds.ts";
import { Watchdog } from "./fuzz/watchdog.ts";
import { mutateTargeted } from "./fuzz/targeted.ts";
import { decodeModel } from "../src/onnx/model_io.ts";

Deno.test("targeted fuzz: every seed class, mutated, ends in a model onnxruntime runs or a PruneError", async () => {
  const watchdog = new Watchdog({ caseSeconds: 60 });
  const kinds = { pruned: 0, refused: 0, finding: 0, skipped: 0 };
  const findings: string[] = [];
  try {
    for (let n = 0; n < 6 * SEEDS.length; n++) {
      const file = SEEDS[n % SEEDS.length];
      const outcome = await watchdog.run({ file, seed: 7, n });
      kinds[outcome.kind]++;
      if (outcome.kind === "finding") {
        findings.push(
          `${file} case ${n} [${outcome.mode}] (${outcome.mutation}): ${outcome.message}`,
        );
      }
    }
  } finally {
    await watchdog.close();
  }
  assert.deepEqual(findings, []);
  assert.ok(kinds.pruned > 0 && kinds.refused > 0, JSON.stringify(kinds));
});

Deno.test("targeted mutations: deterministic, and every kind of edit is made", async () => {
  const bytes = await Deno.readFile(new URL("./fixtures/timm_vit.onnx", import.meta.url));
  const seen = new Set<string>();
  for (let n = 0; n < 200; n++) {
    const [a, what] = mutateTargeted(bytes, 3, n);
    const [b, again] = mutateTargeted(bytes, 3, n);
    assert.equal(what, again);
    assert.deepEqual(a, b);
    seen.add(
      /^wire/.test(what)
        ? "wire"
        : /^type|"to" of Cast/.test(what)
        ? "type"
        : /^value of/.test(what)
        ? "constant"
        : /^attribute/.test(what)
        ? "attribute"
        : /removed|bypassed/.test(what)
        ? "node"
        : what,
    );
  }
  assert.deepEqual([...seen].sort(), ["attribute", "constant", "node", "type", "wire"]);
  // The seed itself is untouched by its mutations (tensor data are views into it).
  decodeModel(bytes);
  assert.deepEqual(
    bytes,
    await Deno.readFile(new URL("./fixtures/timm_vit.onnx", import.meta.url)),
  );
});

Deno.test("watchdog: a hang, a crash and a memory overrun (twice) are findings naming the case; the next case runs", async () => {
  const watchdog = new Watchdog({
    caseSeconds: 10, // a child started on a busy machine takes seconds before its first case
    memoryBytes: 400 * 2 ** 20,
    child: new URL("./helpers/fuzz_misbehaving_child.ts", import.meta.url),
  });
  try {
    const run = (n: number) => watchdog.run({ file: "x.onnx", seed: 1, n });
    assert.equal((await run(0)).kind, "pruned");
    const hang = await run(1);
    assert.equal(hang.kind, "finding");
    assert.equal(hang.watchdog, "hang");
    assert.equal(hang.mutation, "mutation of case 1");
    assert.equal((await run(0)).kind, "pruned");
    const crash = await run(2);
    assert.equal(crash.watchdog, "crash");
    assert.match(crash.message!, /exit code 3/);
    const memory = await run(3);
    assert.equal(memory.watchdog, "memory");
    assert.equal(memory.mutation, "mutation of case 3");
    assert.equal((await run(0)).kind, "pruned");
    // Each misbehaving case ran twice, in a fresh child each time.
    assert.equal(watchdog.started, 7);
  } finally {
    await watchdog.close();
  }
});
