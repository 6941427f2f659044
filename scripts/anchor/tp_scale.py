#!/usr/bin/env python3
"""Torch-Pruning 1.6.1 on a timm ViT or a Llama-style decoder, timed for the scale benchmark
(scripts/bench/scale.ts).

    .venv/bin/python scripts/anchor/tp_scale.py vit_base_patch16_224 [--export OUT.onnx]
    .venv/bin/python scripts/anchor/tp_scale.py llama_1b [--export OUT.onnx]

Llama models (llama_tiny, llama_1b, llama_7b) are built from the configs of
scripts/bench/make_llama.py, in float16 as there; their q, k and v projections are pruned by
heads (num_heads of q_proj the query heads, of k_proj and v_proj the KV heads, as Torch-Pruning's
LLM example does), half of them, and half the MLP channels; o_proj, down_proj and lm_head are
ignored so that the hidden width stays. The model's attention then takes its head counts from
the pruned projections.

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


def report(model, times, shapes):
    t0, t1, t2, t3 = times
    print(json.dumps({
        "model": model,
        "construct_s": t1 - t0,
        "graph_and_prune_s": t2 - t1,
        "export_s": t3 - t2,
        "total_s": t3 - t0,
        **shapes,
    }))


def llama(args):
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location(
        "make_llama", os.path.join(os.path.dirname(__file__), "..", "bench", "make_llama.py"))
    make_llama = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_llama)
    size = args.model.removeprefix("llama_")
    t0 = time.perf_counter()
    m = make_llama.build(make_llama.SHAPES[size])
    t1 = time.perf_counter()
    ids = torch.zeros(1, 16, dtype=torch.long)
    mask = torch.ones(1, 16, dtype=torch.long)
    attn = [layer.self_attn for layer in m.model.layers]
    num_heads = {}
    for a in attn:
        num_heads[a.q_proj] = m.config.num_attention_heads
        num_heads[a.k_proj] = m.config.num_key_value_heads
        num_heads[a.v_proj] = m.config.num_key_value_heads
    ignored = [m.lm_head] + [a.o_proj for a in attn]
    ignored += [layer.mlp.down_proj for layer in m.model.layers]
    pruner = tp.pruner.MetaPruner(
        m,
        (ids, mask),
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=ignored,
        num_heads=num_heads,
        prune_num_heads=True,
        prune_head_dims=False,
        head_pruning_ratio=0.5,
        global_pruning=False,
    )
    pruner.step()
    for a in attn:  # HF's attention reads its head counts from these
        heads = a.q_proj.out_features // a.head_dim
        kv = a.k_proj.out_features // a.head_dim
        a.num_key_value_groups = heads // kv
        a.config.num_attention_heads, a.config.num_key_value_heads = heads, kv
    t2 = time.perf_counter()
    if args.export:
        make_llama.export(m, args.export)  # as the benchmark's model was exported
    t3 = time.perf_counter()
    a0 = attn[0]
    report(args.model, (t0, t1, t2, t3), {
        "heads": a0.q_proj.out_features // a0.head_dim,
        "kv_heads": a0.k_proj.out_features // a0.head_dim,
        "mlp": m.model.layers[0].mlp.gate_proj.out_features,
        "embedding": m.model.embed_tokens.embedding_dim,
        "params": sum(p.numel() for p in m.parameters()),
    })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--export")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.model.startswith("llama_"):
        llama(args)
        return
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
    report(args.model, (t0, t1, t2, t3), {
        "heads": b0.attn.num_heads,
        "mlp": b0.mlp.fc1.out_features,
        "embedding": b0.mlp.fc1.in_features,
        "params": sum(p.numel() for p in m.parameters()),
    })


if __name__ == "__main__":
    main()
