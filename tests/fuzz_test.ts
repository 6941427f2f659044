/**
 * Bounded fuzzing of the reader and the pruner (the long run: scripts/fuzz.ts): mutated and
 * truncated models end in a pruned model onnxruntime runs, or a PruneError — nothing else.
 */
import assert from "node:assert/strict";
import { fuzzCase } from "./fuzz_cases.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);

for (const [file, cases] of [["timm_vit.onnx", 300], ["more/llama_gqa.onnx", 100]] as const) {
  Deno.test(`fuzz: ${cases} mutations of ${file} end in a model onnxruntime runs or a PruneError`, async () => {
    const bytes = await Deno.readFile(new URL(file, FIXTURES));
    const findings: string[] = [];
    const kinds = { pruned: 0, refused: 0, finding: 0 };
    for (let n = 0; n < cases; n++) {
      const outcome = await fuzzCase(bytes, 7, n);
      kinds[outcome.kind]++;
      if (outcome.kind === "finding") {
        findings.push(`case ${n} (${outcome.mutation}): ${outcome.message}`);
      }
    }
    assert.deepEqual(findings, []);
    // Both ends are reached: some mutations still prune, some are refused.
    assert.ok(kinds.pruned > 0 && kinds.refused > 0, JSON.stringify(kinds));
  });
}
