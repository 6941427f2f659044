/**
 * The seed models of the targeted strategy: one export of each class the pruner reads, and the
 * symbolic dim sizes an export needs to run (the zoo's index records them).
 */
const FIXTURES = new URL("../fixtures/", import.meta.url);

/** Seed files, relative to tests/fixtures. */
export const SEEDS: readonly string[] = [
  "timm_vit.onnx", // fused qkv as Reshape + Transpose + Gather
  "more/llama_gqa.onnx", // grouped-query attention, RoPE
  "zoo/clip_text.onnx", // q/k/v fused, split by Slice (nn.MultiheadAttention)
  "zoo/phi3.onnx", // qkv_proj and gate_up_proj split
  "zoo/kv_llama_gqa.onnx", // KV cache in and out
  "zoo/kv_llama_merged.onnx", // merged decoder: the cache branch inside an If
  "zoo/quant_dynamic_vit.onnx", // DynamicQuantizeLinear + MatMulInteger
  "zoo/quant_qdq_vit.onnx", // QuantizeLinear / DequantizeLinear
  "zoo/quant_nbits_llama_b16.onnx", // block-wise int4 MatMulNBits
  "zoo/fused_bert_attention.onnx", // onnxruntime's fused Attention
  "zoo/fused_llama_gqa.onnx", // onnxruntime's GroupQueryAttention
  "zoo/float16_vit.onnx", // float16 weights and I/O, inserted Casts
];

/** The bytes of a seed and the dim sizes it runs with. */
export interface Seed {
  file: string;
  bytes: Uint8Array;
  dimValues?: Record<string, number>;
}

let zooIndex: Record<string, { file?: string; dimValues?: Record<string, number> }> | undefined;

/** Reads a seed (a path relative to tests/fixtures, or any path to an ONNX file). */
export async function loadSeed(file: string): Promise<Seed> {
  const url = new URL(file, FIXTURES);
  const bytes = await Deno.readFile(url);
  zooIndex ??= JSON.parse(await Deno.readTextFile(new URL("zoo/index.json", FIXTURES)));
  const name = file.split("/").at(-1);
  const entry = Object.values(zooIndex!).find((e) => e.file === name && e.dimValues);
  return { file, bytes, dimValues: file.includes("zoo/") ? entry?.dimValues : undefined };
}
