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

Deno.test("watchdog: the mutate strategy runs in the child too, case for case as in this process", async () => {
  const { fuzzCase } = await import("./fuzz_cases.ts");
  const bytes = await Deno.readFile(new URL("./fixtures/timm_vit.onnx", import.meta.url));
  const watchdog = new Watchdog({ caseSeconds: 60 });
  try {
    for (let n = 0; n < 12; n++) {
      const watched = await watchdog.run({ file: "timm_vit.onnx", seed: 7, n, strategy: "mutate" });
      const here = await fuzzCase(bytes, 7, n);
      assert.equal(watched.kind, here.kind, `case ${n}: ${watched.message}`);
      assert.equal(watched.mutation, here.mutation);
    }
  } finally {
    await watchdog.close();
  }
});

Deno.test("scripts/fuzz.ts --state: a second run goes on from the first one's next case and adds to its totals", async () => {
  const dir = await Deno.makeTempDir();
  const state = `${dir}/state.json`;
  const run = async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../scripts/fuzz.ts", import.meta.url).href,
        "--seconds",
        "2",
        "--seed",
        "7",
        "--state",
        state,
      ],
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return [new TextDecoder().decode(out.stdout), JSON.parse(await Deno.readTextFile(state))];
  };
  try {
    const [, first] = await run();
    assert.ok(first.next > 0 && first.pruned + first.refused === first.next, JSON.stringify(first));
    const [stdout, second] = await run();
    assert.match(stdout, new RegExp(`resumed from .* at case ${first.next}\\b`));
    assert.ok(second.next > first.next);
    assert.equal(second.pruned + second.refused, second.next);
    assert.ok(second.seconds > first.seconds);
    assert.match(stdout, new RegExp(`^${second.next} inputs in `, "m"));
    // Another strategy or seed with the same state file is refused.
    const other = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../scripts/fuzz.ts", import.meta.url).href, "--state", state],
    }).output();
    assert.equal(other.code, 2);
    assert.match(new TextDecoder().decode(other.stderr), /state of another run/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
