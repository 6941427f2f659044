#!/usr/bin/env python3
"""Torch-Pruning 1.6.1 reference ("anchor") results for the @prune/vit test fixtures.

Writes tests/fixtures/anchor/torch_pruning.json. For every fixture model (rebuilt from
tests/fixtures/torch/<name>.pt + the config in tests/fixtures/fixtures.json) and every case
below, it runs tp.pruner.MetaPruner with tp.importance.GroupMagnitudeImportance(p) (local
pruning, global_pruning=False, one step, no finetuning) and records what Torch-Pruning kept.

Cases (options in the CLI's terms; "criterion" l1 -> p=1, l2 -> p=2):
  heads_l2 / heads_l1        {"pruneNumHeads": true,  "pruneHeadDims": false, "headPruningRatio": 0.5, "pruningRatio": 0}
  head_dims_l2               {"pruneNumHeads": false, "pruneHeadDims": true,  "headPruningRatio": 0.5, "pruningRatio": 0}
  mlp_l2 / mlp_l1            {"pruneNumHeads": false, "pruneHeadDims": false, "headPruningRatio": 0,   "pruningRatio": 0.5}
  mlp_r0.3_round8_l2         {"pruneNumHeads": false, "pruneHeadDims": false, "headPruningRatio": 0,   "pruningRatio": 0.3, "roundTo": 8}
  emb_l2 / emb_l1            {... all of the above 0/false, "embeddingPruningRatio": 0.25}
  emb_r0.3_round8_l2         {... all of the above 0/false, "embeddingPruningRatio": 0.3, "roundTo": 8}
  (embedding = residual width; timm and transformers fixtures only, TP pruning_ratio = embedding ratio,
  ignored_layers = [classifier, every qkv / q,k,v, every fc1], cls_token / pos_embed auto-detected
  by TP as unwrapped parameters pruned on their last dim)
"tp_call" in each entry gives the exact MetaPruner arguments used (see scripts/anchor/README.md for
why heads / head dims need pruning_ratio>0 in TP, and how MLP/embedding are kept untouched).
The torchvision fixture only has MLP cases: TP's nn.MultiheadAttention pruner prunes
`embed_dim`, i.e. the residual width, so it cannot remove heads / head dims alone.

Per entry (JSON):
  fixture            fixture ONNX file name (tests/fixtures/<fixture>)
  case, options, tp_call
  embed_dim          {"before", "after"} (equal except in emb_* cases; checked)
  kept_embedding_channels  (emb_* only) original residual channel numbers kept, ascending, found by
                     exact matching of the patch-embedding conv output rows; the script checks that
                     EVERY tensor of the pruned model is the original restricted to these channels on
                     each dim whose size changed (cls_token/pos_embed columns, norms, biases, ...), that
                     heads / head dims / MLP widths are unchanged, and that the set equals the README
                     formula recomputed without TP (emb_formula_kept)
  blocks[i]          heads_before/after, head_dim_before/after, kept_heads (original head numbers,
                     ascending), kept_head_dims (per kept head: kept dim indices inside the head,
                     original numbering; null when head dims are not pruned), mlp_before/after,
                     kept_mlp_channels (original fc1 output channel numbers, ascending),
                     attn_scale_after (softmax scale used by the pruned torch model)
                     Kept indices are derived by matching pruned weight rows to original rows
                     (emb_* cases: original q/k/v/fc1 columns and proj/fc2 rows restricted to
                     kept_embedding_channels first)
                     (exact equality of q, k and v rows and of proj/fc2 columns), not from TP internals.
  params             {"before","after"}: sum(p.numel()) of the torch model
  macs               {"tp_before","tp_after"}: tp.utils.count_ops_and_params (batch 1; TP's own
                     counting rules, see README), {"matmul_before","matmul_after"}:
                     torch.utils.flop_counter.FlopCounterMode total / 2 (conv + linear + attention
                     matmuls, multiply-accumulates only, no bias/elementwise)
  probe_logits       {"before","after"[, "after_keep_scale"]}: logits for the probe input
                     x.flatten()[i] = float32(sin(0.05*i)), shape [1,C,H,W] (no normalisation)
                     "after_keep_scale" (head-dim cases): pruned model but softmax scale kept at
                     1/sqrt(original head dim) (what a graph with a constant scale computes).
Top-level "fixtures" holds the unpruned params / MACs per fixture (independent-count check).

Usage: .venv/bin/python scripts/anchor/torch_pruning_anchor.py
"""
from __future__ import annotations

import copy
import json
import math
import re
import sys
import warnings
from pathlib import Path

import torch
import torch_pruning as tp
from torch.utils.flop_counter import FlopCounterMode

SCRIPT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPT_DIR.parent.parent
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures"
OUT_JSON = FIXTURES_DIR / "anchor" / "torch_pruning.json"

warnings.filterwarnings("ignore")

CASES = [
    ("heads_l2", dict(pruneNumHeads=True, pruneHeadDims=False, headPruningRatio=0.5, pruningRatio=0.0, roundTo=None, criterion="l2")),
    ("heads_l1", dict(pruneNumHeads=True, pruneHeadDims=False, headPruningRatio=0.5, pruningRatio=0.0, roundTo=None, criterion="l1")),
    ("head_dims_l2", dict(pruneNumHeads=False, pruneHeadDims=True, headPruningRatio=0.5, pruningRatio=0.0, roundTo=None, criterion="l2")),
    ("mlp_l2", dict(pruneNumHeads=False, pruneHeadDims=False, headPruningRatio=0.0, pruningRatio=0.5, roundTo=None, criterion="l2")),
    ("mlp_l1", dict(pruneNumHeads=False, pruneHeadDims=False, headPruningRatio=0.0, pruningRatio=0.5, roundTo=None, criterion="l1")),
    ("mlp_r0.3_round8_l2", dict(pruneNumHeads=False, pruneHeadDims=False, headPruningRatio=0.0, pruningRatio=0.3, roundTo=8, criterion="l2")),
    # embedding (residual) width only; heads, head dims and MLP hidden channels untouched
    ("emb_l2", dict(pruneNumHeads=False, pruneHeadDims=False, headPruningRatio=0.0, pruningRatio=0.0, embeddingPruningRatio=0.25, roundTo=None, criterion="l2")),
    ("emb_l1", dict(pruneNumHeads=False, pruneHeadDims=False, headPruningRatio=0.0, pruningRatio=0.0, embeddingPruningRatio=0.25, roundTo=None, criterion="l1")),
    ("emb_r0.3_round8_l2", dict(pruneNumHeads=False, pruneHeadDims=False, headPruningRatio=0.0, pruningRatio=0.0, embeddingPruningRatio=0.3, roundTo=8, criterion="l2")),
]
EMB_FAMILIES = ("timm", "transformers")  # torchvision: TP's MHA pruner couples embed_dim with the attention width


def is_emb(opts):
    return opts.get("embeddingPruningRatio", 0) > 0


# --------------------------------------------------------------------------------------------
# Model families: how to find blocks / layers, register heads and sync attributes after pruning
# --------------------------------------------------------------------------------------------
class Family:
    name = ""
    supports_heads = True
    changeable = []  # regexes of state-dict keys that may change shape

    def blocks(self, m): raise NotImplementedError
    def qkv_rows(self, b): raise NotImplementedError        # -> (q, k, v) weight matrices [A, D]
    def proj_w(self, b): raise NotImplementedError           # attention output projection weight [D, A]
    def fc1(self, b): raise NotImplementedError
    def fc2(self, b): raise NotImplementedError
    def heads(self, b): raise NotImplementedError
    def head_dim(self, b): raise NotImplementedError
    def scale(self, b): raise NotImplementedError
    def embed_conv(self, m): raise NotImplementedError
    def classifier(self, m): raise NotImplementedError
    def num_heads_map(self, m): raise NotImplementedError
    def attn_root_layers(self, m): raise NotImplementedError  # ignored for MLP-only cases
    def sync(self, m, pruner): pass
    def set_scale(self, b, s): raise NotImplementedError
    def emb_members(self, m): raise NotImplementedError
    # -> (out_rows: [Linear/Conv whose OUT channels are residual channels],
    #     in_cols:  [Linear whose IN channels are residual channels],
    #     norms:    [LayerNorm over the residual width])


class TimmFamily(Family):
    name = "timm"
    changeable = [r"blocks\.\d+\.attn\.(qkv\.(weight|bias)|proj\.weight)$",
                  r"blocks\.\d+\.mlp\.(fc1\.(weight|bias)|fc2\.weight)$"]
    attn_keys = r"blocks\.\d+\.attn\."
    mlp_keys = r"blocks\.\d+\.mlp\."

    def blocks(self, m): return list(m.blocks)
    def qkv_rows(self, b):
        w = b.attn.qkv.weight.detach()
        a = w.shape[0] // 3
        return w[:a], w[a:2 * a], w[2 * a:]
    def proj_w(self, b): return b.attn.proj.weight.detach()
    def fc1(self, b): return b.mlp.fc1
    def fc2(self, b): return b.mlp.fc2
    def heads(self, b): return b.attn.num_heads
    def head_dim(self, b): return b.attn.head_dim
    def scale(self, b):
        # fused SDPA (default) is called without scale= -> 1/sqrt(actual head dim)
        return b.attn.head_dim ** -0.5 if b.attn.fused_attn else b.attn.scale
    def embed_conv(self, m): return m.patch_embed.proj
    def classifier(self, m): return m.head
    def num_heads_map(self, m): return {b.attn.qkv: b.attn.num_heads for b in m.blocks}
    def attn_root_layers(self, m): return [b.attn.qkv for b in m.blocks]
    def sync(self, m, pruner):
        # official TP timm example: num_heads from pruner, head_dim = qkv.out_features // (3*num_heads)
        for b in m.blocks:
            a = b.attn
            a.num_heads = pruner.num_heads.get(a.qkv, a.num_heads)
            a.head_dim = a.qkv.out_features // (3 * a.num_heads)
            a.attn_dim = a.num_heads * a.head_dim
            a.scale = a.head_dim ** -0.5
    def set_scale(self, b, s):
        b.attn.fused_attn = False
        b.attn.scale = s
    def emb_members(self, m):
        import torch.nn as nn
        out_rows = [m.patch_embed.proj] + [l for b in m.blocks for l in (b.attn.proj, b.mlp.fc2)]
        in_cols = [l for b in m.blocks for l in (b.attn.qkv, b.mlp.fc1)] + [m.head]
        norms = [n for b in m.blocks for n in (b.norm1, b.norm2)] + \
                [n for n in (m.norm, m.fc_norm) if isinstance(n, nn.LayerNorm)]
        return out_rows, in_cols, norms


class HFFamily(Family):
    name = "transformers"
    changeable = [r"vit\.layers\.\d+\.attention\.([qkv]_proj\.(weight|bias)|o_proj\.weight)$",
                  r"vit\.layers\.\d+\.mlp\.(fc1\.(weight|bias)|fc2\.weight)$"]
    attn_keys = r"vit\.layers\.\d+\.attention\."
    mlp_keys = r"vit\.layers\.\d+\.mlp\."

    def blocks(self, m): return list(m.vit.layers)
    def qkv_rows(self, b):
        a = b.attention
        return a.q_proj.weight.detach(), a.k_proj.weight.detach(), a.v_proj.weight.detach()
    def proj_w(self, b): return b.attention.o_proj.weight.detach()
    def fc1(self, b): return b.mlp.fc1
    def fc2(self, b): return b.mlp.fc2
    def heads(self, b): return b.attention.num_attention_heads
    def head_dim(self, b): return b.attention.head_dim
    def scale(self, b): return b.attention.scaling
    def embed_conv(self, m): return m.vit.embeddings.patch_embeddings.projection
    def classifier(self, m): return m.classifier
    def num_heads_map(self, m):
        d = {}
        for b in m.vit.layers:
            a = b.attention
            for lin in (a.q_proj, a.k_proj, a.v_proj):
                d[lin] = a.num_attention_heads
        return d
    def attn_root_layers(self, m):
        return [lin for b in m.vit.layers for lin in (b.attention.q_proj, b.attention.k_proj, b.attention.v_proj)]
    def sync(self, m, pruner):
        # transformers 5.x ViTAttention: forward reshapes to (..., -1, head_dim) and uses self.scaling.
        # Like the official TP HF example (num_attention_heads / attention_head_size updated, SDPA
        # scale derived from the new head size) we set scaling = head_dim ** -0.5.
        for b in m.vit.layers:
            a = b.attention
            a.num_attention_heads = pruner.num_heads.get(a.q_proj, a.num_attention_heads)
            a.head_dim = a.q_proj.out_features // a.num_attention_heads
            a.scaling = a.head_dim ** -0.5
    def set_scale(self, b, s):
        b.attention.scaling = s
    def emb_members(self, m):
        v = m.vit
        out_rows = [v.embeddings.patch_embeddings.projection] + [l for b in v.layers for l in (b.attention.o_proj, b.mlp.fc2)]
        in_cols = [l for b in v.layers for l in (b.attention.q_proj, b.attention.k_proj, b.attention.v_proj, b.mlp.fc1)] + [m.classifier]
        norms = [n for b in v.layers for n in (b.layernorm_before, b.layernorm_after)] + [v.layernorm]
        return out_rows, in_cols, norms


class TorchvisionFamily(Family):
    name = "torchvision"
    supports_heads = False
    changeable = [r"encoder\.layers\.encoder_layer_\d+\.mlp\.(0\.(weight|bias)|3\.weight)$"]
    attn_keys = r"encoder\.layers\.encoder_layer_\d+\.self_attention\."
    mlp_keys = r"encoder\.layers\.encoder_layer_\d+\.mlp\."

    def blocks(self, m): return list(m.encoder.layers)
    def qkv_rows(self, b):
        w = b.self_attention.in_proj_weight.detach()
        a = w.shape[0] // 3
        return w[:a], w[a:2 * a], w[2 * a:]
    def proj_w(self, b): return b.self_attention.out_proj.weight.detach()
    def fc1(self, b): return b.mlp[0]
    def fc2(self, b): return b.mlp[3]
    def heads(self, b): return b.self_attention.num_heads
    def head_dim(self, b): return b.self_attention.head_dim
    def scale(self, b): return b.self_attention.head_dim ** -0.5
    def embed_conv(self, m): return m.conv_proj
    def classifier(self, m): return m.heads.head
    def num_heads_map(self, m): return {}
    def attn_root_layers(self, m): return [b.self_attention for b in m.encoder.layers]


FAMILIES = {"timm": TimmFamily(), "transformers": HFFamily(), "torchvision": TorchvisionFamily()}


def build(meta):
    cfg = meta["config"]
    lib = meta["library"]
    if lib == "timm":
        from timm.models.vision_transformer import VisionTransformer
        m = VisionTransformer(**cfg)
    elif lib == "torchvision":
        from torchvision.models.vision_transformer import VisionTransformer
        m = VisionTransformer(**cfg)
    elif lib == "transformers":
        from transformers import ViTConfig, ViTForImageClassification
        m = ViTForImageClassification(ViTConfig(**cfg))
    else:
        raise ValueError(lib)
    sd = torch.load(FIXTURES_DIR / meta["torch_state_dict"], map_location="cpu", weights_only=True)
    m.load_state_dict(sd)
    return m.eval()


def logits_of(m, x):
    with torch.no_grad():
        out = m(x)
    if not isinstance(out, torch.Tensor):
        out = out.logits if hasattr(out, "logits") else out[0]
    return out


def probe_input(shape):
    n = math.prod(shape)
    return torch.sin(0.05 * torch.arange(n, dtype=torch.float64)).float().reshape(shape)


def tp_macs(m, x):
    macs, _ = tp.utils.count_ops_and_params(m, x)
    return int(macs)


def matmul_macs(m, x):
    # nn.MultiheadAttention's eval fast path (_native_multi_head_attention) is invisible to
    # FlopCounterMode; disable it so torchvision's attention is counted like the others.
    prev = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            logits_of(m, x)
    finally:
        torch.backends.mha.set_fastpath_enabled(prev)
    return int(fc.get_total_flops() // 2)


def row_index(original: torch.Tensor) -> dict:
    idx = {}
    for i, r in enumerate(original):
        key = r.numpy().tobytes()
        if key in idx:
            raise RuntimeError("duplicate rows in original weight; exact matching is ambiguous")
        idx[key] = i
    return idx


def match_rows(original: torch.Tensor, pruned: torch.Tensor) -> list[int]:
    idx = row_index(original)
    out = []
    for r in pruned:
        key = r.numpy().tobytes()
        if key not in idx:
            raise RuntimeError("pruned row not found among original rows")
        out.append(idx[key])
    return out


def block_record(fam, b0, b1, prune_dims: bool, emb_kept=None):
    """emb_kept: kept residual channels (embedding cases); the original q/k/v/fc1 columns and
    proj/fc2 rows are restricted to them before row matching."""
    ek = None if emb_kept is None else torch.tensor(emb_kept)
    cols = (lambda w: w) if ek is None else (lambda w: w[:, ek].contiguous())
    rows = (lambda w: w) if ek is None else (lambda w: w[ek].contiguous())
    hd0, h0 = fam.head_dim(b0), fam.heads(b0)
    q0, k0, v0 = (cols(w) for w in fam.qkv_rows(b0))
    q1, k1, v1 = fam.qkv_rows(b1)
    cq, ck, cv = match_rows(q0, q1), match_rows(k0, k1), match_rows(v0, v1)
    assert cq == ck == cv, "q/k/v kept channels differ"
    assert cq == sorted(cq), "kept channels not in ascending order"
    # attention output projection: kept input columns must be the same channels
    assert match_rows(rows(fam.proj_w(b0)).t().contiguous(), fam.proj_w(b1).t().contiguous()) == cq
    kept_heads = sorted({c // hd0 for c in cq})
    h1, hd1 = fam.heads(b1), fam.head_dim(b1)
    assert len(kept_heads) == h1 and h1 * hd1 == len(cq), (kept_heads, h1, hd1, len(cq))
    per_head = [[c % hd0 for c in cq if c // hd0 == h] for h in kept_heads]
    assert all(len(d) == hd1 for d in per_head)
    f0, f1 = cols(fam.fc1(b0).weight.detach()), fam.fc1(b1).weight.detach()
    cm = match_rows(f0, f1)
    assert cm == sorted(cm)
    assert match_rows(rows(fam.fc2(b0).weight.detach()).t().contiguous(), fam.fc2(b1).weight.detach().t().contiguous()) == cm
    return {
        "heads_before": h0, "heads_after": h1,
        "head_dim_before": hd0, "head_dim_after": hd1,
        "kept_heads": kept_heads,
        "kept_head_dims": per_head if prune_dims else None,
        "mlp_before": f0.shape[0], "mlp_after": f1.shape[0],
        "kept_mlp_channels": cm,
        "attn_scale_after": fam.scale(b1),
    }


def tp_args(fam, m, opts):
    """Translate CLI options to MetaPruner kwargs (and a JSON-able description)."""
    p = 1 if opts["criterion"] == "l1" else 2
    ignored = [fam.classifier(m), fam.embed_conv(m)]
    desc_ignored = ["classifier", "patch-embedding conv"]
    if is_emb(opts):
        # classifier ignored only blocks its OUT-channel group (the classes); its in-channels are
        # pruned with the embedding group. The patch-embedding conv is the group's member, not ignored.
        # Ignoring every q/k/v (qkv) and fc1 blocks the attention and MLP groups (their OUT
        # channels); their IN channels stay in the embedding group.
        ignored = [fam.classifier(m)] + fam.attn_root_layers(m) + [fam.fc1(b) for b in fam.blocks(m)]
        desc_ignored = ["classifier (blocks only its out-channel group; its in-channels are pruned with the embedding group)",
                        "attention q/k/v (timm qkv / HF q_proj,k_proj,v_proj) of every block", "mlp fc1 of every block"]
        kwargs = dict(pruning_ratio=opts["embeddingPruningRatio"])
    elif opts["pruneNumHeads"] or opts["pruneHeadDims"]:
        ignored += [fam.fc1(b) for b in fam.blocks(m)]
        desc_ignored.append("mlp fc1 of every block")
        kwargs = dict(
            num_heads=fam.num_heads_map(m),
            prune_num_heads=opts["pruneNumHeads"],
            prune_head_dims=opts["pruneHeadDims"],
            head_pruning_ratio=opts["headPruningRatio"] if opts["pruneNumHeads"] else 0.0,
            # TP only visits a group when pruning_ratio removes >0 channels (see README); for
            # head-dim pruning pruning_ratio IS the per-head dim ratio.
            pruning_ratio=opts["headPruningRatio"],
        )
    else:
        ignored += fam.attn_root_layers(m)
        desc_ignored.append("attention q/k/v (or MHA) layers of every block")
        kwargs = dict(pruning_ratio=opts["pruningRatio"])
    kwargs.update(global_pruning=False, round_to=opts["roundTo"], iterative_steps=1)
    desc = {k: v for k, v in kwargs.items() if k != "num_heads"}
    if "num_heads" in kwargs:
        desc["num_heads"] = "{qkv: H} (timm) / {q_proj: H, k_proj: H, v_proj: H} (transformers)"
    desc["importance"] = f"GroupMagnitudeImportance(p={p})"
    desc["ignored_layers"] = desc_ignored
    if is_emb(opts):
        desc["unwrapped_parameters"] = None  # set in run_case from what TP auto-detected
    return tp.importance.GroupMagnitudeImportance(p=p), ignored, kwargs, desc


def run_case(name, meta, fam, case_name, opts):
    m0 = build(meta)
    m1 = copy.deepcopy(m0)
    shape = [1] + list(meta["input"]["shape"][1:])
    x_ex = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    imp, ignored, kwargs, desc = tp_args(fam, m1, opts)
    pruner = tp.pruner.MetaPruner(m1, x_ex, importance=imp, ignored_layers=ignored, **kwargs)
    if is_emb(opts):
        names = {p: n for n, p in m1.named_parameters()}
        desc["unwrapped_parameters"] = "TP 1.6.1 auto-detection (none passed): " + ", ".join(
            f"{names[p]}: dim {d}" for p, d in pruner.DG.unwrapped_parameters)
        emb_expected = emb_formula_kept(fam, m0, opts)
    pruner.step()
    fam.sync(m1, pruner)
    m1.eval()

    sd0, sd1 = m0.state_dict(), m1.state_dict()
    assert sd0.keys() == sd1.keys()
    emb_kept = None
    if is_emb(opts):
        # kept residual channels: exact matching of the patch-embedding conv output rows
        emb_kept = match_rows(fam.embed_conv(m0).weight.detach().flatten(1), fam.embed_conv(m1).weight.detach().flatten(1))
        assert emb_kept == sorted(emb_kept)
        d0, d1 = fam.embed_conv(m0).out_channels, len(emb_kept)
        ek = torch.tensor(emb_kept)
        # every tensor = original restricted to the kept residual channels on each dim that changed
        # (cls_token / pos_embed columns, norms, biases, q/k/v/fc1/head columns, proj/fc2 rows, ...)
        for k in sd0:
            t0, t1 = sd0[k], sd1[k]
            assert t0.dim() == t1.dim(), k
            for dim, (a, b) in enumerate(zip(t0.shape, t1.shape)):
                if a != b:
                    assert (a, b) == (d0, d1), (k, t0.shape, t1.shape)
                    t0 = t0.index_select(dim, ek)
            assert torch.equal(t0, t1), f"{name}/{case_name}: {k} not a slice of the original"
        for ln in fam.emb_members(m1)[2]:
            assert tuple(ln.normalized_shape) == (d1,), ln
        assert emb_kept == emb_expected, f"{name}/{case_name}: TP kept set differs from the README formula"
        assert fam.classifier(m1).out_features == fam.classifier(m0).out_features
        assert fam.classifier(m1).in_features == d1

    # non-embedding cases: only heads / head dims / MLP hidden channels may change; everything else bit-identical
    for k in (sd0 if emb_kept is None else []):
        t0, t1 = sd0[k], sd1[k]
        may_change = any(re.search(rx, k) for rx in fam.changeable)
        if opts["pruneNumHeads"] or opts["pruneHeadDims"]:
            may_change = may_change and bool(re.search(fam.attn_keys, k))
        else:
            may_change = may_change and bool(re.search(fam.mlp_keys, k))
        if not may_change:
            assert t0.shape == t1.shape and torch.equal(t0, t1), f"{name}/{case_name}: {k} changed"
    embed0 = fam.embed_conv(m0).out_channels
    embed1 = fam.embed_conv(m1).out_channels
    if emb_kept is None:
        assert embed0 == embed1 and fam.classifier(m1).in_features == fam.classifier(m0).in_features

    x = probe_input(shape)
    l0, l1 = logits_of(m0, x), logits_of(m1, x)
    assert l1.shape == l0.shape and torch.isfinite(l1).all()
    blocks = [dict(index=i, **block_record(fam, b0, b1, opts["pruneHeadDims"], emb_kept))
              for i, (b0, b1) in enumerate(zip(fam.blocks(m0), fam.blocks(m1)))]
    if emb_kept is not None:
        for b in blocks:
            assert b["heads_after"] == b["heads_before"] and b["head_dim_after"] == b["head_dim_before"]
            assert b["mlp_after"] == b["mlp_before"] and b["kept_mlp_channels"] == list(range(b["mlp_before"]))
    probe = {"before": [round(v, 6) for v in l0[0].tolist()], "after": [round(v, 6) for v in l1[0].tolist()]}
    if opts["pruneHeadDims"]:
        m2 = copy.deepcopy(m1)
        for b0, b2 in zip(fam.blocks(m0), fam.blocks(m2)):
            fam.set_scale(b2, fam.head_dim(b0) ** -0.5)
        probe["after_keep_scale"] = [round(v, 6) for v in logits_of(m2, x)[0].tolist()]
    opts_out = {k: v for k, v in opts.items() if not (k == "roundTo" and v is None)}
    e = {
        "fixture": meta["file"],
        "case": case_name,
        "options": opts_out,
        "tp_call": desc,
        "embed_dim": {"before": embed0, "after": embed1},
    }
    if emb_kept is not None:
        e["kept_embedding_channels"] = emb_kept
    e.update({
        "blocks": blocks,
        "params": {"before": sum(p.numel() for p in m0.parameters()), "after": sum(p.numel() for p in m1.parameters())},
        "macs": {"tp_before": tp_macs(m0, x), "tp_after": tp_macs(m1, x),
                 "matmul_before": matmul_macs(m0, x), "matmul_after": matmul_macs(m1, x)},
        "probe_logits": probe,
    })
    return e


def emb_formula_kept(fam, m, opts):
    """README formula for the embedding group, recomputed without TP (float64): score of residual
    channel c = sum over out_rows of sum|W[c,:]|^p (conv: flattened) + sum over in_cols of
    sum|W[:,c]|^p + sum over LayerNorms of |gamma[c]|^p; removed = D - int(D*(1-r)), kept count
    rounded down to a multiple of round_to; the lowest scores are removed."""
    p = 1 if opts["criterion"] == "l1" else 2
    out_rows, in_cols, norms = fam.emb_members(m)
    s = 0
    for l in out_rows:
        s = s + l.weight.detach().double().flatten(1).abs().pow(p).sum(1)
    for l in in_cols:
        s = s + l.weight.detach().double().abs().pow(p).sum(0)
    for n in norms:
        s = s + n.weight.detach().double().abs().pow(p)
    d = s.numel()
    n_rm = d - int(d * (1 - opts["embeddingPruningRatio"]))
    if opts["roundTo"]:
        kept = d - n_rm
        kept -= kept % opts["roundTo"]
        n_rm = d - kept
    removed = set(torch.argsort(s, stable=True)[:n_rm].tolist())
    return [c for c in range(d) if c not in removed]


def main():
    torch.set_num_threads(1)
    meta_all = json.loads((FIXTURES_DIR / "fixtures.json").read_text())["fixtures"]
    names = [n for n in ("timm_vit", "hf_vit", "torchvision_vit", "fmnist_vit") if n in meta_all]
    missing = {"timm_vit", "hf_vit", "torchvision_vit", "fmnist_vit"} - set(names)
    if missing:
        print(f"WARNING: fixtures missing from fixtures.json: {sorted(missing)}")
    entries, fixtures = [], {}
    for name in names:
        meta = meta_all[name]
        fam = FAMILIES[meta["library"]]
        m0 = build(meta)
        shape = [1] + list(meta["input"]["shape"][1:])
        x = probe_input(shape)
        fixtures[meta["file"]] = {
            "library": meta["library"],
            "embed_dim": fam.embed_conv(m0).out_channels,
            "blocks": [{"heads": fam.heads(b), "head_dim": fam.head_dim(b), "mlp": fam.fc1(b).out_features}
                       for b in fam.blocks(m0)],
            "params": sum(p.numel() for p in m0.parameters()),
            "macs_tp": tp_macs(m0, x),
            "macs_matmul": matmul_macs(m0, x),
        }
        for case_name, opts in CASES:
            if (opts["pruneNumHeads"] or opts["pruneHeadDims"]) and not fam.supports_heads:
                continue
            if is_emb(opts) and fam.name not in EMB_FAMILIES:
                continue
            e = run_case(name, meta, fam, case_name, opts)
            bl = e["blocks"]
            print(f"{name:16s} {case_name:20s} heads {[b['heads_after'] for b in bl]} hd {[b['head_dim_after'] for b in bl]} "
                  f"mlp {[b['mlp_after'] for b in bl]} emb {e['embed_dim']['before']}->{e['embed_dim']['after']} params {e['params']['before']}->{e['params']['after']} "
                  f"macs(tp) {e['macs']['tp_before']}->{e['macs']['tp_after']}", flush=True)
            entries.append(e)
    out = {
        "description": "Torch-Pruning 1.6.1 anchor results; generated by scripts/anchor/torch_pruning_anchor.py "
                       "(see its docstring and scripts/anchor/README.md for field meanings and TP semantics).",
        "torch_pruning_version": "1.6.1",
        "probe_input": "x.flatten()[i] = float32(sin(0.05*i)) for i in [0, N*C*H*W), batch 1, no normalisation",
        "macs_definitions": {
            "tp": "torch_pruning.utils.count_ops_and_params (module hooks; see README for its rules)",
            "matmul": "torch.utils.flop_counter.FlopCounterMode total flops / 2: conv + linear + attention matmuls "
                      "(QK^T and AV), multiply-accumulates only",
        },
        "torchvision_note": "torchvision ViT uses nn.MultiheadAttention; TP prunes MHA only through embed_dim "
                            "(= residual width), so head / head-dim cases are impossible without changing the "
                            "embedding width and are omitted.",
        "fixtures": fixtures,
        "entries": entries,
    }
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT_JSON.relative_to(REPO_ROOT)} ({len(entries)} entries)")


if __name__ == "__main__":
    main()
