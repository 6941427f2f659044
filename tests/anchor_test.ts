/**
 * The same decisions and numbers as Torch-Pruning 1.6.1 on the same models: the anchor results
 * in `fixtures/anchor/torch_pruning.json` were produced by `scripts/anchor/torch_pruning_anchor.py`
 * from the PyTorch models the ONNX fixtures were exported from (GroupMagnitudeImportance, local
 * pruning, no finetuning). Kept heads, kept dims, kept MLP channels and parameter counts must be
 * equal; MACs must equal an independent count (torch's FlopCounterMode) where it sees the ops;
 * and the pruned ONNX model's logits must equal those of Torch-Pruning's pruned PyTorch model.
 */
import assert from "node:assert/strict";
import { prune } from "../src/prune.ts";
import { createCore } from "../src/core/mod.ts";
import { decodeModel } from "../src/onnx/model_io.ts";
import { createSession, loadOrt } from "../src/runtime/ort.ts";
import type { AttentionBlockReport, MlpBlockReport } from "../src/report.ts";

interface AnchorBlock {
  heads_after: number;
  head_dim_after: number;
  kept_heads: number[];
  kept_head_dims: number[][] | null;
  mlp_after: number;
  kept_mlp_channels: number[];
}

interface AnchorEntry {
  fixture: string;
  case: string;
  options: {
    pruneNumHeads: boolean;
    pruneHeadDims: boolean;
    headPruningRatio: number;
    pruningRatio: number;
    roundTo?: number;
    embeddingPruningRatio?: number;
    criterion: "l1" | "l2";
  };
  kept_embedding_channels?: number[];
  blocks: AnchorBlock[];
  params: { before: number; after: number };
  macs: { matmul_before: number; matmul_after: number };
  /** Logits of the pruned torch model on x[i] = sin(0.05·i), shape [1, C, H, W]. */
  probe_logits: { before: number[]; after: number[]; after_keep_scale?: number[] };
}

const FIXTURES = new URL("./fixtures/", import.meta.url);
const anchor = JSON.parse(
  await Deno.readTextFile(new URL("anchor/torch_pruning.json", FIXTURES)),
) as { entries: AnchorEntry[] };
const core = await createCore({ backend: "cpu" });

async function probeLogits(model: Uint8Array): Promise<Float32Array> {
  const ort = await loadOrt();
  const session = await createSession(model);
  const input = decodeModel(model).graph!.input![0];
  const dims = input.type!.tensorType!.shape!.dim!.map((d, i) => i === 0 ? 1 : Number(d.dimValue));
  const x = new Float32Array(dims.reduce((a, b) => a * b, 1)).map((_, i) => Math.sin(0.05 * i));
  const out = await session.run({ [session.inputNames[0]]: new ort.Tensor("float32", x, dims) });
  return out[session.outputNames[0]].data as Float32Array;
}

for (const entry of anchor.entries) {
  Deno.test(`Torch-Pruning anchor: ${entry.fixture} ${entry.case}`, async () => {
    const bytes = await Deno.readFile(new URL(entry.fixture, FIXTURES));
    const o = entry.options;
    const { bytes: pruned, report } = await prune(bytes, {
      pruneNumHeads: o.pruneNumHeads,
      pruneHeadDims: o.pruneHeadDims,
      headPruningRatio: o.headPruningRatio,
      pruningRatio: o.pruningRatio,
      roundTo: o.roundTo,
      embeddingPruningRatio: o.embeddingPruningRatio,
      criterion: o.criterion,
      core,
    });
    const attention = report.blocks.filter((b) => b.kind === "attention") as AttentionBlockReport[];
    const mlp = report.blocks.filter((b) => b.kind === "mlp") as MlpBlockReport[];
    const embedding = report.blocks.find((b) => b.kind === "embedding") as MlpBlockReport;
    if (entry.kept_embedding_channels) {
      assert.deepEqual(embedding.keptChannels, entry.kept_embedding_channels, "kept embedding");
    }
    assert.equal(attention.length, entry.blocks.length);
    assert.equal(mlp.length, entry.blocks.length);
    entry.blocks.forEach((tp, i) => {
      assert.deepEqual(attention[i].keptHeads, tp.kept_heads, `block ${i} kept heads`);
      assert.equal(attention[i].headDim.after, tp.head_dim_after, `block ${i} head dim`);
      if (tp.kept_head_dims && o.pruneHeadDims) {
        assert.deepEqual(attention[i].keptDims, tp.kept_head_dims, `block ${i} kept dims`);
      }
      assert.deepEqual(mlp[i].keptChannels, tp.kept_mlp_channels, `block ${i} kept MLP channels`);
    });
    assert.equal(report.params.before, entry.params.before, "params before");
    assert.equal(report.params.after, entry.params.after, "params after");
    // Same numbers: our pruned ONNX computes what Torch-Pruning's pruned PyTorch model computes
    // (with the original attention scale, which this tool keeps, for head-dim pruning).
    const expected = entry.probe_logits.after_keep_scale ?? entry.probe_logits.after;
    const logits = await probeLogits(pruned);
    assert.equal(logits.length, expected.length);
    const diff = Math.max(...expected.map((v, i) => Math.abs(v - logits[i])));
    assert.ok(diff < 1e-4, `logits differ from Torch-Pruning's by ${diff}`);
    // torch's FlopCounterMode does not see torchvision's fused multi-head attention kernel.
    if (!entry.fixture.startsWith("torchvision")) {
      assert.equal(report.macs.before, entry.macs.matmul_before, "MACs before");
      assert.equal(report.macs.after, entry.macs.matmul_after, "MACs after");
    }
  });
}
