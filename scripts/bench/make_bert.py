#!/usr/bin/env python3
"""Exports a BERT-base-shaped encoder with random weights and its calibration tokens for the
data-aware benchmark (scripts/bench/data_aware.ts).

    .venv/bin/python scripts/bench/make_bert.py OUT_DIR [SEQUENCES] [TOKENS]

OUT_DIR/bert_base.onnx: Hugging Face BertModel, bert-base-uncased's configuration (12 layers,
hidden 768, 12 heads, MLP 3072), random weights (seeded), TorchScript exporter, opset 17,
inputs input_ids / attention_mask / token_type_ids with symbolic batch and sequence, outputs
last_hidden_state and pooler_output. OUT_DIR/bert_tokens/input_ids.npy: SEQUENCES × TOKENS
(default 512 × 128) random token ids (int64, seeded).
"""
import os
import sys
import tempfile
import warnings

import numpy as np
import onnx
import torch
from transformers import BertConfig, BertModel

warnings.filterwarnings("ignore")


class Encoder(torch.nn.Module):
    """BertModel called by keyword, its two outputs as a tuple (what the exporter takes)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids)
        return out.last_hidden_state, out.pooler_output


def main():
    out = sys.argv[1]
    sequences = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    os.makedirs(os.path.join(out, "bert_tokens"), exist_ok=True)
    config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072)
    path = os.path.join(out, "bert_base.onnx")
    if not os.path.exists(path):
        torch.manual_seed(0)
        model = Encoder(BertModel(config)).eval()
        ids = torch.randint(0, config.vocab_size, (2, 16))
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {n: {0: "batch", 1: "sequence"} for n in names}
        axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
        axes["pooler_output"] = {0: "batch"}
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            raw = os.path.join(tmp, "model.onnx")
            with torch.no_grad():
                torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), raw,
                                  dynamo=False, opset_version=17, input_names=names,
                                  output_names=["last_hidden_state", "pooler_output"],
                                  dynamic_axes=axes)
            onnx.save(onnx.load(raw), path + ".tmp")
            os.replace(path + ".tmp", path)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, config.vocab_size, size=(sequences, tokens), dtype=np.int64)
    np.save(os.path.join(out, "bert_tokens", "input_ids.npy"), ids)
    print("ok", path, sum(t.size for t in [ids]) // tokens, "sequences of", tokens, "tokens")


if __name__ == "__main__":
    main()
