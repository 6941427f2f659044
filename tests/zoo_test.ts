/**
 * The zoo (`fixtures/zoo/`, built by `scripts/fixtures/make_zoo.py`): every export × mode held to
 * `fixtures/zoo/expected.json` (written by `scripts/verify/zoo_check.ts --write-expected`,
 * reviewed by hand). "exact": pruned ≡ masked on every floating-point output, something pruned,
 * the check not vacuous; "refused": a PruneError whose message names a node, tensor or graph
 * input/output of the model; "runs": the embedding width pruned under a LayerNorm and onnxruntime
 * runs the result. An export with no expectations yet is skipped with a note.
 */
import assert from "node:assert/strict";
import { createCore } from "../src/core/mod.ts";
import { checkCell, formatCell, MODES, namesNode } from "../scripts/verify/zoo_modes.ts";

const ZOO = new URL("./fixtures/zoo/", import.meta.url);
/** Per export: mode → outcome, and the sizes of symbolic dims it needs ("dimValues"). */
const expected: Record<string, Record<string, unknown>> = JSON.parse(
  await Deno.readTextFile(new URL("expected.json", ZOO)),
);
const onnxFiles = [...Deno.readDirSync(ZOO)].map((e) => e.name)
  .filter((n) => n.endsWith(".onnx")).sort();
const unlisted = onnxFiles.map((f) => f.replace(/\.onnx$/, "")).filter((n) => !expected[n]);
if (unlisted.length) {
  console.log(
    `zoo: no expectations for ${unlisted.join(", ")} (skipped; ` +
      `scripts/verify/zoo_check.ts --write-expected adds them)`,
  );
}

const core = await createCore({ backend: "cpu" });

/** One read per export: the oracle runs the original once for all its modes (same bytes). */
const files = new Map<string, Promise<Uint8Array>>();
function read(name: string): Promise<Uint8Array> {
  if (!files.has(name)) files.set(name, Deno.readFile(new URL(`${name}.onnx`, ZOO)));
  return files.get(name)!;
}

for (const [name, { dimValues, ...modes }] of Object.entries(expected)) {
  const dims = dimValues ? { dimValues: dimValues as Record<string, number> } : {};
  for (const [mode, want] of Object.entries(modes)) {
    Deno.test(`zoo ${name} ${mode}: ${want}`, async () => {
      assert.ok(MODES[mode], `expected.json: unknown mode "${mode}"`);
      const bytes = await read(name);
      const cell = await checkCell(bytes, mode, { core, ...dims });
      assert.equal(cell.outcome, want, `${name} ${mode}: ${formatCell(cell)}`);
      if (want === "refused") {
        assert.ok(cell.namesNode, `the refusal names no node of the model: ${cell.message}`);
      }
      if (want === "exact") {
        assert.ok(cell.params!.after < cell.params!.before);
        assert.ok(cell.difference! <= cell.tolerance! && cell.effect! > 1e-5);
      }
    });
  }
}

Deno.test("zoo: a refusal names a node when it quotes one of the model's, or one derived from it", async () => {
  const bytes = await read("timm_vit");
  assert.ok(namesNode(bytes, 'block "/blocks/blocks.0/attn/qkv/MatMul" is fused'));
  assert.ok(namesNode(bytes, 'attention block "/blocks/blocks.0/attn/qkv/MatMul_q" computes'));
  assert.ok(!namesNode(bytes, "no attention block was recognised in this graph"));
  assert.ok(!namesNode(bytes, 'node "/blocks/blocks.9/attn/qkv/MatMul" is fused'));
});
