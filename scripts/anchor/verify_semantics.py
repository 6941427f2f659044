#!/usr/bin/env python3
"""Re-derive Torch-Pruning's choices from raw weights with the plain formulas written in
scripts/anchor/README.md and check them against tests/fixtures/anchor/torch_pruning.json.

This is the executable spec of TP 1.6.1's local GroupMagnitudeImportance selection for ViT blocks:
  channel score  s[c] = sum over the group's layers of sum_i |w_i|^p  (weights only, no bias, no root)
  head score     mean of s over the head's channels
  dim score      mean of s[h*hd + j] over heads h (same dims removed in every head)
  counts         heads removed = ceil(r*H); dims/channels removed = n - int(n*(1-r)); round_to: kept
                 = (n - removed) rounded down to a multiple of round_to
  ties           lowest scores removed (torch.topk / argsort); no exact ties occur in these fixtures
Usage: .venv/bin/python scripts/anchor/verify_semantics.py
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
FIX = REPO_ROOT / "tests" / "fixtures"


def layer_weights(lib, sd, i):
    """Return (q, k, v [A,D], proj [D,A], fc1 [M,D], fc2 [D,M]) as float64 numpy arrays."""
    g = lambda k: sd[k].double().numpy()
    if lib == "timm":
        w = g(f"blocks.{i}.attn.qkv.weight"); a = w.shape[0] // 3
        return w[:a], w[a:2 * a], w[2 * a:], g(f"blocks.{i}.attn.proj.weight"), g(f"blocks.{i}.mlp.fc1.weight"), g(f"blocks.{i}.mlp.fc2.weight")
    if lib == "transformers":
        p = f"vit.layers.{i}."
        return (g(p + "attention.q_proj.weight"), g(p + "attention.k_proj.weight"), g(p + "attention.v_proj.weight"),
                g(p + "attention.o_proj.weight"), g(p + "mlp.fc1.weight"), g(p + "mlp.fc2.weight"))
    p = f"encoder.layers.encoder_layer_{i}."
    w = g(p + "self_attention.in_proj_weight"); a = w.shape[0] // 3
    return w[:a], w[a:2 * a], w[2 * a:], g(p + "self_attention.out_proj.weight"), g(p + "mlp.0.weight"), g(p + "mlp.3.weight")


def lowest(scores, n):
    return set(np.argsort(scores, kind="stable")[:n].tolist())


def main():
    anchor = json.loads((FIX / "anchor" / "torch_pruning.json").read_text())
    meta = {m["file"]: m for m in json.loads((FIX / "fixtures.json").read_text())["fixtures"].values()}
    n_ok = 0
    for e in anchor["entries"]:
        m = meta[e["fixture"]]
        sd = torch.load(FIX / m["torch_state_dict"], map_location="cpu", weights_only=True)
        o = e["options"]
        p = 1 if o["criterion"] == "l1" else 2
        for b in e["blocks"]:
            q, k, v, proj, fc1, fc2 = layer_weights(m["library"], sd, b["index"])
            H, hd = b["heads_before"], b["head_dim_before"]
            if o["pruneNumHeads"] or o["pruneHeadDims"]:
                s = sum((np.abs(x) ** p).sum(1) for x in (q, k, v)) + (np.abs(proj) ** p).sum(0)
                if o["pruneNumHeads"]:
                    head_s = s.reshape(H, hd).mean(1)
                    removed = lowest(head_s, math.ceil(o["headPruningRatio"] * H))
                    exp = sorted(set(range(H)) - removed)
                    assert exp == b["kept_heads"], (e["fixture"], e["case"], b["index"], exp, b["kept_heads"])
                if o["pruneHeadDims"]:
                    dim_s = s.reshape(H, hd).mean(0)
                    n_rm = hd - int(hd * (1 - o["headPruningRatio"]))
                    exp = sorted(set(range(hd)) - lowest(dim_s, n_rm))
                    assert all(d == exp for d in b["kept_head_dims"]), (e["fixture"], e["case"], b["index"])
            else:
                s = (np.abs(fc1) ** p).sum(1) + (np.abs(fc2) ** p).sum(0)
                M = fc1.shape[0]
                n_rm = M - int(M * (1 - o["pruningRatio"]))
                if o.get("roundTo"):
                    kept = M - n_rm
                    kept -= kept % o["roundTo"]
                    n_rm = M - kept
                exp = sorted(set(range(M)) - lowest(s, n_rm))
                assert exp == b["kept_mlp_channels"], (e["fixture"], e["case"], b["index"])
            n_ok += 1
    print(f"OK: {n_ok} block selections reproduced from the README formulas")


if __name__ == "__main__":
    main()
