#!/usr/bin/env python3
"""Torch-Pruning 1.6.1 on a timm ViT, timed for the scale benchmark (scripts/bench/scale.ts).

    .venv/bin/python scripts/anchor/tp_scale.py vit_base_patch16_224 [--export OUT.onnx]

Builds the model (random weights), then runs tp.pruner.MetaPruner with
GroupMagnitudeImportance(p=2): half the heads of every block (prune_num_heads,
head_pruning_ratio 0.5) and half the MLP hidden channels (pruning_ratio 0.5), the residual width
kept (the classifier, patch embedding, attention output and fc2 layers ignored) — the same
decision as `deno run -A mod.ts MODEL --prune-num-heads --head-pruning-ratio 0.5
--pruning-ratio 0.5`. With --export the pruned model is written with torch.onnx (external data
above 2 GB), so "end to end" covers construction, DependencyGraph, pruning and export.

Prints one JSON line: seconds for construction, DependencyGraph + pruning, export, total; and
the pruned shapes (heads, MLP width, embedding width) to check the decision.
"""
import argparse
import json
import time
import warnings

import timm
import torch
import torch_pruning as tp

warnings.filterwarnings("ignore")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--export")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    m = timm.create_model(args.model, pretrained=False).eval()
    t1 = time.perf_counter()
    x = torch.randn(1, 3, m.default_cfg["input_size"][1], m.default_cfg["input_size"][2])
    ignored = [m.head, m.patch_embed.proj]
    for b in m.blocks:
        ignored += [b.attn.proj, b.mlp.fc2]
    pruner = tp.pruner.MetaPruner(
        m,
        x,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=ignored,
        num_heads={b.attn.qkv: b.attn.num_heads for b in m.blocks},
        prune_num_heads=True,
        prune_head_dims=False,
        head_pruning_ratio=0.5,
        global_pruning=False,
    )
    pruner.step()
    for b in m.blocks:  # what the pruned attention must compute with (TP's README)
        b.attn.num_heads = pruner.num_heads[b.attn.qkv]
        if hasattr(b.attn, "attn_dim"):  # timm ≥ 1.0.20 also keeps the attention width
            b.attn.attn_dim = b.attn.num_heads * b.attn.head_dim
    t2 = time.perf_counter()
    if args.export:
        with torch.no_grad():
            torch.onnx.export(m, (x,), args.export, dynamo=False, opset_version=17,
                              input_names=["x"], output_names=["y"])
    t3 = time.perf_counter()
    b0 = m.blocks[0]
    print(json.dumps({
        "model": args.model,
        "construct_s": t1 - t0,
        "graph_and_prune_s": t2 - t1,
        "export_s": t3 - t2,
        "total_s": t3 - t0,
        "heads": b0.attn.num_heads,
        "mlp": b0.mlp.fc1.out_features,
        "embedding": b0.mlp.fc1.in_features,
        "params": sum(p.numel() for p in m.parameters()),
    }))


if __name__ == "__main__":
    main()
