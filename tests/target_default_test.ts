/**
 * A budget (a target) given without head flags: head dims take part, scored per weight against
 * MLP channels, so the budget goes where weights are smallest whatever their kind; a budget one
 * kind absorbs is said in a note; a head ratio of 0 keeps attention out.
 */
import assert from "node:assert/strict";
import { pruneModel, type RunOptions } from "../src/prune.ts";
import { decodeModel } from "../src/onnx/model_io.ts";
import type { ModelProto } from "../src/onnx/proto.ts";
import { createCore } from "../src/core/mod.ts";
import type { AttentionBlockReport, MlpBlockReport } from "../src/report.ts";

const core = await createCore({ backend: "cpu" });
const bytes = await Deno.readFile(new URL("./fixtures/timm_vit.onnx", import.meta.url));

/** The model with every value of the constants of one kind of group (weights and biases)
 * mapped by `f`. */
async function mapped(
  kinds: ("attention" | "mlp")[],
  f: (v: number, i: number) => number,
): Promise<ModelProto> {
  const { report } = await pruneModel(decodeModel(bytes), { dryRun: true, core });
  const names = new Set(
    report.groups.filter((g) => kinds.includes(g.kind as "mlp")).flatMap((g) =>
      g.tensors.map((t) => t.name)
    ),
  );
  const model = decodeModel(bytes);
  for (const t of model.graph!.initializer!) {
    if (!names.has(t.name!)) continue;
    const values = new Float32Array(t.rawData!.slice().buffer).map(f);
    t.rawData = new Uint8Array(values.buffer);
  }
  return model;
}

const scaled = (kind: "attention" | "mlp", factor: number) => mapped([kind], (v) => v * factor);

async function spend(model: ModelProto, options: RunOptions = {}) {
  const { report } = await pruneModel(model, {
    budget: { metric: "macs", amount: 0.2 * 1.94e6 },
    allocation: "global",
    core,
    ...options,
  });
  const attention = report.blocks.filter((b): b is AttentionBlockReport => b.kind === "attention");
  const mlp = report.blocks.filter((b): b is MlpBlockReport => b.kind === "mlp");
  return {
    report,
    dims: attention.reduce((s, b) => s + b.headDim.before - b.headDim.after, 0),
    channels: mlp.reduce((s, b) => s + b.channels.before - b.channels.after, 0),
    absorbed: report.notes.find((n) => n.startsWith("the budget went to")),
  };
}

Deno.test("with a budget and no head flags, head dims take part and go where weights are small", async () => {
  const quietAttention = await spend(await scaled("attention", 0.1));
  assert.ok(
    quietAttention.report.notes.includes(
      "no head mode given: removing head dims (Torch-Pruning's default)",
    ),
  );
  assert.ok(quietAttention.dims > 0, "head dims of small weights go");
  const quietMlp = await spend(await scaled("mlp", 0.1));
  assert.ok(quietMlp.channels > 0, "MLP channels of small weights go");
  assert.ok(
    quietAttention.dims > quietMlp.dims,
    `${quietAttention.dims} dims go when attention is small, ${quietMlp.dims} when the MLP is`,
  );
});

Deno.test("weights of one magnitude score alike per weight, whatever kind holds them", async () => {
  // Every weight and bias ±1: a head dim spans far more weights than an MLP channel, so summed
  // or averaged over layers it would always outscore one; per weight they tie, and dims go.
  const even = await mapped(["attention", "mlp"], (_, i) => (i * 2654435761) % 7 < 3 ? -1 : 1);
  const out = await spend(even);
  assert.ok(out.dims > 0, `dims ${out.dims}, channels ${out.channels}`);
});

Deno.test("a budget one kind absorbs is said in a note", async () => {
  const loudAttention = await spend(await scaled("attention", 10));
  assert.equal(loudAttention.dims, 0);
  assert.match(
    loudAttention.absorbed ?? "",
    /^the budget went to MLP channels only: head dims scored higher in every block/,
  );
  const quietAttention = await spend(await scaled("attention", 0.1));
  if (quietAttention.channels > 0) assert.equal(quietAttention.absorbed, undefined);
});

Deno.test("a head ratio of 0 keeps attention out of a budget", async () => {
  const out = await spend(await scaled("attention", 0.1), { headPruningRatio: 0 });
  assert.equal(out.dims, 0);
  assert.ok(out.channels > 0);
  assert.equal(out.absorbed, undefined, "MLP channels were the only kind offered");
});
