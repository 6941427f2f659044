/**
 * A [batch, width] first output is a classifier's scores only when linear layers compute it:
 * real exports' heads (timm, HF, torchvision, Swin, DeiT's averaged heads) are classifiers; BERT's
 * pooler (a tanh) and a mean-pooled sentence embedding are not, and the search scores them by
 * cosine.
 */
import assert from "node:assert/strict";
import { isClassifierOutput } from "../src/graph/output_kind.ts";
import { decodeModel } from "../src/onnx/model_io.ts";
import { type ModelProto, onnx } from "../src/onnx/proto.ts";
import { pruneModel } from "../src/prune.ts";
import { loadOrt } from "../src/runtime/ort.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const ort = await loadOrt();
const read = async (file: string) => decodeModel(await Deno.readFile(new URL(file, FIXTURES)));

/** BERT with its pooler output first, or a mean over the tokens of its hidden states. */
async function bertWithFirstOutput(kind: "pooler" | "mean"): Promise<ModelProto> {
  const bert = await read("more/bert.onnx");
  const outputs = bert.graph!.output!;
  if (kind === "pooler") {
    bert.graph!.output = [outputs[1], outputs[0]];
    return bert;
  }
  bert.graph!.node!.push(onnx.NodeProto.create({
    opType: "ReduceMean",
    input: ["last_hidden_state"],
    output: ["sentence_embedding"],
    attribute: [
      onnx.AttributeProto.create({ name: "axes", type: 7, ints: [1] }),
      onnx.AttributeProto.create({ name: "keepdims", type: 2, i: 0 }),
    ],
  }));
  bert.graph!.output = [onnx.ValueInfoProto.create({ name: "sentence_embedding" }), ...outputs];
  return bert;
}

Deno.test("classifier heads of real exports are classifiers; pooled embeddings are not", async () => {
  for (
    const file of [
      "fmnist_vit.onnx",
      "timm_vit.onnx",
      "timm_vit_dynamo.onnx",
      "hf_vit.onnx",
      "torchvision_vit.onnx",
      "more/swin.onnx",
      "more/deit_distilled.onnx",
    ]
  ) {
    assert.equal(isClassifierOutput(await read(file), [2, 10]), true, file);
  }
  assert.equal(isClassifierOutput(await read("more/bert.onnx"), [2, 8, 64]), false);
  assert.equal(isClassifierOutput(await bertWithFirstOutput("pooler"), [2, 64]), false);
  assert.equal(isClassifierOutput(await bertWithFirstOutput("mean"), [2, 64]), false);
  assert.equal(isClassifierOutput(await read("hf_vit.onnx"), [2, 1]), false, "one column");
});

Deno.test("the search scores a pooled embedding by cosine, and fisher ranks its heads", async () => {
  const [batch, seq] = [4, 8];
  let k = 3;
  const calibration = [0, 1, 2, 3].map(() => ({
    input_ids: new ort.Tensor(
      "int64",
      BigInt64Array.from({ length: batch * seq }, () => BigInt(1 + (k++ * 37) % 97)),
      [batch, seq],
    ),
    attention_mask: new ort.Tensor("int64", new BigInt64Array(batch * seq).fill(1n), [batch, seq]),
    token_type_ids: new ort.Tensor("int64", new BigInt64Array(batch * seq), [batch, seq]),
  }));
  const { report } = await pruneModel(await bertWithFirstOutput("mean"), {
    pruneNumHeads: true,
    headPruningRatio: 0.5,
    calibration,
    dimValues: { sequence: seq },
    criterion: "fisher",
    allocation: "local",
    search: { seed: 1 },
  });
  assert.equal(report.search!.metric, "cosine");
  assert.ok(report.search!.candidates[0].fidelity, JSON.stringify(report.search!.candidates));
});
