#!/usr/bin/env python3
"""Exports a Llama-style decoder (GQA, RoPE, RMSNorm, SwiGLU) built with HF transformers from a
config, random weights, in float16, with its tensors in one external data file — the large
models of the scale benchmark.

    .venv/bin/python scripts/bench/make_llama.py OUT_DIR NAME [tiny|1b|7b]

1b: TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads / 4 KV heads, MLP 5632);
7b: Llama-2-7B's with GQA (hidden 4096, 32 layers, 32 heads / 8 KV heads, MLP 11008).
Inputs input_ids and attention_mask [1, 16]; output logits; no KV cache; TorchScript exporter, opset 17.
"""
import os
import sys
import tempfile
import warnings

import onnx
import torch
from transformers import LlamaConfig, LlamaForCausalLM

warnings.filterwarnings("ignore")

SHAPES = {
    "tiny": dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=8,
                 num_key_value_heads=2, intermediate_size=704),
    "1b": dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, intermediate_size=5632),
    "7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, intermediate_size=11008),
}


class Logits(LlamaForCausalLM):
    def forward(self, input_ids, attention_mask):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                               use_cache=False).logits


def main():
    out, name, size = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.onnx")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, max_position_embeddings=2048, **SHAPES[size])
    config._attn_implementation = "eager"
    with torch.device("cpu"):
        m = Logits(config).to(torch.float16).eval()
    ids = torch.zeros(1, 16, dtype=torch.long)
    mask = torch.ones(1, 16, dtype=torch.long)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        raw = os.path.join(tmp, "model.onnx")
        with torch.no_grad():
            torch.onnx.export(m, (ids, mask), raw, dynamo=False, opset_version=17,
                              input_names=["input_ids", "attention_mask"],
                              output_names=["logits"])
        params = sum(p.numel() for p in m.parameters())
        del m
        model = onnx.load(raw, load_external_data=True)
        onnx.save(model, path + ".tmp", save_as_external_data=True, all_tensors_to_one_file=True,
                  location=f"{name}.onnx.data", size_threshold=1024)
        os.replace(path + ".tmp", path)
    print("ok", path, params)


if __name__ == "__main__":
    main()
