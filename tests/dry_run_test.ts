/**
 * A dry run reports what the run would do (sizes after, blocks, notes) and changes nothing;
 * a run that removes nothing says so.
 */
import assert from "node:assert/strict";
import { prune, pruneModel, type RunOptions } from "../src/prune.ts";
import { decodeModel, encodeModel } from "../src/onnx/model_io.ts";
import { structuralCopy } from "../src/onnx/structural_copy.ts";
import { deferredRawData } from "../src/onnx/external_data.ts";
import { createCore } from "../src/core/mod.ts";

const core = await createCore({ backend: "cpu" });
const fixture = (name: string) => Deno.readFile(new URL(`./fixtures/${name}`, import.meta.url));

Deno.test("a dry run's report is the run's report, and the model stays as it was", async () => {
  const bytes = await fixture("timm_vit.onnx");
  const cases: RunOptions[] = [
    { pruneNumHeads: true, headPruningRatio: 0.5 },
    { pruneHeadDims: true, headPruningRatio: 0.5, pruningRatio: 0.25 },
    { pruneHeadDims: true, qkPruningRatio: 0.25, vPruningRatio: 0.5 }, // q, k, v unfused first
    { embeddingPruningRatio: 0.25, pruningRatio: 0.5 },
  ];
  for (const options of cases) {
    const model = decodeModel(bytes);
    const dry = await pruneModel(model, { ...options, dryRun: true, core });
    assert.equal(dry.model, model);
    assert.deepEqual(encodeModel(model), bytes, "the model is unchanged");
    const run = await pruneModel(decodeModel(bytes), { ...options, core });
    const what = JSON.stringify(options);
    assert.ok(dry.report.params.after < dry.report.params.before, what);
    assert.ok(dry.report.macs.after < dry.report.macs.before, what);
    assert.deepEqual(dry.report.params, run.report.params, what);
    assert.deepEqual(dry.report.macs, run.report.macs, what);
    assert.deepEqual(dry.report.blocks, run.report.blocks, what);
    assert.deepEqual(dry.report.notes, run.report.notes, what);
  }
});

Deno.test("the dry run's copy shares the weights' bytes instead of copying them", async () => {
  const bytes = await fixture("timm_vit.onnx");
  const model = decodeModel(bytes);
  const copy = structuralCopy(model);
  const originals = model.graph!.initializer!, copies = copy.graph!.initializer!;
  assert.ok(originals.some((t) => t.rawData!.length > 1024));
  for (const [i, t] of originals.entries()) {
    const c = copies[i];
    assert.notEqual(c, t, "a message of its own");
    assert.notEqual(c.dims, t.dims, "dims of its own");
    assert.equal(c.rawData, t.rawData, `${t.name}: the same bytes, not a copy`);
    assert.equal(!!deferredRawData(c), t.rawData!.length > 1024, `${t.name}: read when asked`);
  }
  // Rewriting the copy leaves the original as it was.
  copies[0].dims = [1];
  copies[0].rawData = new Uint8Array(4);
  copy.graph!.node![0].name = "renamed";
  copy.graph!.node![0].input!.push("extra");
  assert.deepEqual(encodeModel(model), bytes);
});

Deno.test("a run that removes nothing says so, and returns the input as it was", async () => {
  const bytes = await fixture("timm_vit.onnx");
  const cases: [RunOptions, RegExp][] = [
    [{ pruneNumHeads: true }, /no ratio or target was given/],
    [
      { pruneNumHeads: true, headPruningRatio: 0.5, keepHeads: ["/blocks/"] },
      /keep every head, dim and channel \(--keep-heads/,
    ],
  ];
  for (const [options, why] of cases) {
    const { bytes: out, report } = await prune(bytes, { ...options, core });
    const note = report.notes.find((n) => n.startsWith("nothing was pruned"));
    assert.ok(note, report.notes.join("; "));
    assert.match(note, why);
    assert.deepEqual(out, bytes);
  }
  const { report } = await prune(bytes, { pruningRatio: 0.5, core });
  assert.ok(!report.notes.some((n) => n.startsWith("nothing was pruned")));
});

Deno.test("the CLI warns on stderr when its output is a copy of the input", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/m.onnx`, await fixture("timm_vit.onnx"));
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../mod.ts", import.meta.url).pathname,
        "m.onnx",
        "-o",
        "out.onnx",
        "--json",
      ],
      cwd: dir,
      env: { NO_COLOR: "1", ONNXRUNTIME_NODE_INSTALL: "skip" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.match(stderr, /^warning: nothing was pruned: .*; out\.onnx is a copy of the input$/m);
    JSON.parse(new TextDecoder().decode(out.stdout)); // stdout stays JSON
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
