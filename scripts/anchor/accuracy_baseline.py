#!/usr/bin/env python3
"""Torch-Pruning 1.6.1 accuracy baseline (no finetuning) for the Fashion-MNIST demo ViT.

Model: tests/fixtures/torch/fmnist_vit.pt rebuilt with the "fmnist_vit" config of
tests/fixtures/fixtures.json (timm VisionTransformer, 6 blocks, 3 heads x 32, width 96, MLP 384).
For each MAC target (default 70 %, 50 %, 30 % of the original) and each criterion

  l2      tp.importance.GroupMagnitudeImportance(p=2)
  taylor  tp.importance.GroupTaylorImportance()   (gradients of F.cross_entropy accumulated, in
          eval mode, over the first 256 training images in batches of 64 - one backward per batch,
          as in the official example - before pruner.step())

it prunes with the official timm ViT recipe (examples/transformers/prune_timm_vit.py of TP 1.6.1):

  tp.pruner.MetaPruner(model, torch.randn(1, 1, 28, 28), importance=imp, pruning_ratio=r,
      global_pruning=G, ignored_layers=[model.head], num_heads={blk.attn.qkv: 3 for every block},
      prune_num_heads=P, prune_head_dims=not P, head_pruning_ratio=h, round_to=1, iterative_steps=1)
  pruner.step(); then attn.num_heads = pruner.num_heads[attn.qkv],
  attn.head_dim = qkv.out_features // (3 * num_heads) (+ timm 1.0.31's attn_dim and scale)

i.e. every prunable group is pruned: the residual (embedding) width incl. cls_token / pos_embed
(auto-detected unwrapped parameters), the MLP hidden width and either the head dims (variant
"head_dims": P=False, h=0) or whole heads (variants "heads_h0.3": P=True, h=0.3 and "heads_h0.5":
P=True, h=0.5, the official example's value). Only the classifier's outputs are kept.
Two scopes (both run by default, --scopes):
  local   G=False (the example's default, "uniform"): every group loses the same fraction r;
          heads: ceil(h*3) per block, i.e. 1 (h0.3) or 2 (h0.5) of 3.
  global  G=True: channels ranked across groups (TP's mean-normalised scores), so widths differ per
          block; heads ranked model-wide, 18 - int(18*(1-h)) = 6 (h0.3) or 9 (h0.5) of 18 removed.

For every (scope, criterion, variant, target) r is searched (each trial: a fresh deepcopy of the
trained model, a new MetaPruner, one step): the first grid point r = 0.05, 0.10, ... whose MACs fall
below the target, then bisection (tolerance 1e-4) between it and the previous grid point; of the two
ratios bracketing the target the one whose MACs are closest is used. MACs = FlopCounterMode total
/ 2 at batch 1 (conv + linear + attention QK^T / AV matmuls, as in the tests and
torch_pruning_anchor.py's matmul_macs).

The pruned models are evaluated in torch (eval mode, fused SDPA, whose softmax scale follows the
pruned head dim, as in the official example) on the full Fashion-MNIST test split (10k) and on its
first 1000 images (the demo's tests/fixtures/fmnist_test_1000.bin), with
x = (pixel/255 - 0.286)/0.353.
Per scope, "best_heads" = the heads variant with the higher 10k accuracy and "best" = the better of
head_dims and best_heads; the entry's "best" is the best over scopes. NOTE: this selection uses
test accuracy, so it is optimistic for TP.

Writes bench/torch_pruning_accuracy.json and prints a table.

Usage: .venv/bin/python scripts/anchor/accuracy_baseline.py [--data-dir DIR] [--threads 2]
       [--targets 0.7,0.5,0.3] [--scopes local,global] [--out PATH]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch_pruning as tp

SCRIPT_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPT_DIR))
from torch_pruning_anchor import FAMILIES, FIXTURES_DIR, REPO_ROOT, build, matmul_macs, tp_macs  # noqa: E402

sys.path.insert(0, str(SCRIPT_DIR.parent / "fixtures"))
from train_fmnist_vit import read_idx  # noqa: E402  (one IDX reader, shared with the trainer)

warnings.filterwarnings("ignore")

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"  # Debian package path; override with --data-dir
DEFAULT_OUT = REPO_ROOT / "bench" / "torch_pruning_accuracy.json"
FIXTURE = "fmnist_vit"
TAYLOR_IMAGES = 256
TAYLOR_BATCH = 64
R_MAX = 0.95          # upper end of the pruning_ratio search
GRID_STEP = 0.05      # coarse scan before the bisection
BISECT_TOL = 1e-4     # stop when the bracket is this narrow
BISECT_MAX_ITERS = 24

VARIANTS = {
    # name: (prune_num_heads, head_pruning_ratio)
    "head_dims": (False, 0.0),
    "heads_h0.3": (True, 0.3),
    "heads_h0.5": (True, 0.5),
}
CRITERIA = {
    "l2": ("GroupMagnitudeImportance(p=2)", lambda: tp.importance.GroupMagnitudeImportance(p=2)),
    "taylor": ("GroupTaylorImportance()", lambda: tp.importance.GroupTaylorImportance()),
}


def load_split(d: Path, prefix: str, mean: float, std: float, n: int | None = None):
    x = read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
    y = read_idx(d / f"{prefix}-labels-idx1-ubyte.gz")
    if n is not None:
        x, y = x[:n], y[:n]
    xt = (torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1) - mean) / std
    return xt, torch.from_numpy(y.astype(np.int64))


def accuracy(model, x, y, bs=1000) -> tuple[float, float]:
    """(accuracy on all of x, accuracy on the first 1000)."""
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            preds.append(model(x[i:i + bs]).argmax(1))
    ok = torch.cat(preds) == y
    return int(ok.sum()) / len(y), int(ok[:1000].sum()) / min(1000, len(y))


def accumulate_taylor_grads(model, x, y) -> dict:
    model.eval()
    model.zero_grad(set_to_none=True)
    for i in range(0, len(x), TAYLOR_BATCH):
        F.cross_entropy(model(x[i:i + TAYLOR_BATCH]), y[i:i + TAYLOR_BATCH]).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return grads


class Pruning:
    def __init__(self, base, grads, example):
        self.base, self.grads, self.example = base, grads, example
        self.fam = FAMILIES["timm"]
        self.x1 = example  # batch-1 input for MAC counting
        self.trials = 0

    def prune(self, scope: str, criterion: str, variant: str, r: float):
        """Fresh copy of the trained model, one MetaPruner step at pruning_ratio r."""
        self.trials += 1
        m = copy.deepcopy(self.base)
        if criterion == "taylor":
            for n, p in m.named_parameters():
                p.grad = self.grads[n].clone()
        prune_heads, head_ratio = VARIANTS[variant]
        pruner = tp.pruner.MetaPruner(
            m, self.example,
            importance=CRITERIA[criterion][1](),
            pruning_ratio=r,
            global_pruning=(scope == "global"),
            ignored_layers=[m.head],
            num_heads={b.attn.qkv: b.attn.num_heads for b in m.blocks},
            prune_num_heads=prune_heads,
            prune_head_dims=not prune_heads,
            head_pruning_ratio=head_ratio,
            round_to=1,
            iterative_steps=1,
        )
        pruner.step()
        self.fam.sync(m, pruner)  # num_heads, head_dim = qkv.out_features // (3*num_heads), attn_dim, scale
        m.zero_grad(set_to_none=True)
        return m.eval()

    def macs(self, m) -> int:
        return matmul_macs(m, self.x1)

    def search(self, scope: str, criterion: str, variant: str, target: int):
        """First crossing of the MAC target: scan r = 0.05, 0.10, ... up to R_MAX until MACs(r) <
        target, then bisect between that grid point and the previous one. (MACs(r) is non-increasing
        for local pruning; with global pruning it is not for large r - TP then leaves a group whole
        rather than remove all its channels - so the first crossing, not a plain bisection on
        [0, R_MAX], is searched.) A trial that raises (e.g. a block left without heads) counts as
        over-pruned (MACs -1) and is never chosen.
        Returns (r, model, macs, [(r, macs)...], [error messages])."""
        cache = {}

        def f(r):
            if r not in cache:
                try:
                    m = self.prune(scope, criterion, variant, r)
                    cache[r] = (self.macs(m), m)
                except Exception as e:  # noqa: BLE001
                    cache[r] = (-1, repr(e))
            return cache[r][0]

        lo = 0.0
        cache[lo] = (self.macs(self.base), self.base)
        hi = None
        for k in range(1, int(round(R_MAX / GRID_STEP)) + 1):
            r = round(k * GRID_STEP, 8)
            if f(r) < target:
                hi = r
                break
            lo = r
        if hi is None:
            r = lo  # target not reached below R_MAX: the most pruned valid model
        else:
            it = 0
            while hi - lo > BISECT_TOL and it < BISECT_MAX_ITERS:
                mid = round((lo + hi) / 2, 8)
                if f(mid) >= target:
                    lo = mid
                else:
                    hi = mid
                it += 1
            r = min((v for v in (lo, hi) if cache[v][0] >= 0), key=lambda v: (abs(cache[v][0] - target), v))
        trace = sorted((round(k, 8), v[0]) for k, v in cache.items())
        errors = sorted({v[1] for v in cache.values() if v[0] < 0})
        return r, cache[r][1], cache[r][0], trace, errors


def structure(m):
    return {
        "embed_dim": m.patch_embed.proj.out_channels,
        "heads": [b.attn.num_heads for b in m.blocks],
        "head_dim": [b.attn.head_dim for b in m.blocks],
        "mlp": [b.mlp.fc1.out_features for b in m.blocks],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--targets", default="0.7,0.5,0.3", help="MAC fractions of the original")
    ap.add_argument("--scopes", default="local,global",
                    help="local = MetaPruner(global_pruning=False) (uniform ratio, the example's default), "
                         "global = global_pruning=True")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    meta = json.loads((FIXTURES_DIR / "fixtures.json").read_text())["fixtures"][FIXTURE]
    mean, std = meta["normalization"]["mean"], meta["normalization"]["std"]
    d = Path(args.data_dir)
    x_te, y_te = load_split(d, "t10k", mean, std)
    x_tr, y_tr = load_split(d, "train", mean, std, TAYLOR_IMAGES)
    targets = [float(t) for t in args.targets.split(",")]
    scopes = [s for s in args.scopes.split(",") if s]
    assert set(scopes) <= {"local", "global"}, scopes

    base = build(meta)
    example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    grads = accumulate_taylor_grads(base, x_tr, y_tr)
    P = Pruning(base, grads, example)
    macs0 = P.macs(base)
    params0 = sum(p.numel() for p in base.parameters())
    acc0_10k, acc0_1k = accuracy(base, x_te, y_te)
    assert macs0 == meta["macs_matmul"], (macs0, meta["macs_matmul"])
    print(f"unpruned: params {params0}  MACs {macs0}  acc 10k {acc0_10k:.4f}  acc 1k {acc0_1k:.4f}", flush=True)

    results = []
    for crit in CRITERIA:
        for t in targets:
            target = round(t * macs0)
            entry = {"criterion": crit, "importance": CRITERIA[crit][0], "target_fraction": t,
                     "target_macs": target, "variants": {}}
            for scope in scopes:
                for var in VARIANTS:
                    name = f"{scope}/{var}"
                    t0 = time.perf_counter()
                    r, m, macs, trace, errors = P.search(scope, crit, var, target)
                    v = {"scope": scope, "global_pruning": scope == "global", "variant": var,
                         "prune_num_heads": VARIANTS[var][0], "prune_head_dims": not VARIANTS[var][0],
                         "head_pruning_ratio": VARIANTS[var][1], "pruning_ratio": r}
                    if r == 0.0:  # every trial failed or over-pruned: nothing usable
                        v["error"] = "no pruned model found: " + "; ".join(errors)
                        entry["variants"][name] = v
                        print(f"{crit:6s} {t:.0%} {name:18s} FAILED", flush=True)
                        continue
                    a10k, a1k = accuracy(m, x_te, y_te)
                    st = structure(m)
                    v.update({
                        "macs": macs, "macs_fraction": macs / macs0, "macs_rel_error": (macs - target) / target,
                        "macs_tp": tp_macs(m, example),
                        "params": sum(p.numel() for p in m.parameters()),
                        "acc_10k": a10k, "acc_1000": a1k,
                        "structure": st,
                        "search_trials": len(trace) - 1,
                        "failed_trials": sum(1 for _, mc in trace if mc < 0),
                    })
                    entry["variants"][name] = v
                    print(f"{crit:6s} {t:.0%} {name:18s} r={r:.5f} MACs {macs} ({macs / macs0:.4f}) "
                          f"params {v['params']} acc10k {a10k:.4f} acc1k {a1k:.4f} emb {st['embed_dim']} "
                          f"heads {st['heads']} hd {st['head_dim']} mlp {st['mlp']} "
                          f"[{time.perf_counter() - t0:.1f}s]", flush=True)

            def key(k):
                v = entry["variants"][k]
                return (v.get("acc_10k", -1.0), -abs(v.get("macs_rel_error", 1.0)))

            entry["best_by_scope"] = {}
            for scope in scopes:
                best_heads = max((f"{scope}/{k}" for k in VARIANTS if VARIANTS[k][0]), key=key)
                entry["best_by_scope"][scope] = {
                    "best_heads": best_heads, "best": max([f"{scope}/head_dims", best_heads], key=key)}
            entry["best"] = max((b["best"] for b in entry["best_by_scope"].values()), key=key)
            results.append(entry)

    runtime = time.perf_counter() - t_start
    out = {
        "description": "Torch-Pruning 1.6.1 accuracy baseline without finetuning on the Fashion-MNIST demo ViT; "
                       "generated by scripts/anchor/accuracy_baseline.py (see its docstring and scripts/anchor/README.md).",
        "versions": {"torch": torch.__version__.split("+")[0], "torch_pruning": "1.6.1",
                     "timm": __import__("timm").__version__, "python": platform.python_version()},
        "model": {"fixture": meta["file"], "state_dict": "tests/fixtures/" + meta["torch_state_dict"],
                  "config": meta["config"], "params": params0, "macs": macs0,
                  "acc_10k": acc0_10k, "acc_1000": acc0_1k},
        "macs_definition": "torch.utils.flop_counter.FlopCounterMode total / 2, batch 1: conv + linear + "
                           "attention QK^T and AV matmuls (same as tests / anchor 'matmul')",
        "macs_tp_definition": "tp.utils.count_ops_and_params (TP's own rules, informational)",
        "test_data": f"{args.data_dir}/t10k-*-ubyte.gz, x = (pixel/255 - {mean})/{std}; acc_1000 = first 1000 "
                     "(= tests/fixtures/fmnist_test_1000.bin)",
        "tp_call": {
            "pruner": "tp.pruner.MetaPruner(model, torch.randn(1,1,28,28), importance=IMP, pruning_ratio=r, "
                      "global_pruning=G, ignored_layers=[model.head], "
                      "num_heads={blk.attn.qkv: 3 for blk in model.blocks}, prune_num_heads=P, prune_head_dims=not P, "
                      "head_pruning_ratio=h, round_to=1, iterative_steps=1); pruner.step()",
            "importance": {k: v[0] for k, v in CRITERIA.items()},
            "after": "attn.num_heads = pruner.num_heads[attn.qkv]; attn.head_dim = attn.qkv.out_features // "
                     "(3*attn.num_heads); attn.attn_dim = num_heads*head_dim; attn.scale = head_dim**-0.5",
            "scopes": {"local": "G=False: every group pruned by the same ratio r (per-block head count "
                                "ceil(h*3))",
                       "global": "G=True: channels ranked across all groups (normalised scores), "
                                 "18 - int(18*(1-h)) heads removed model-wide"},
            "variants": {k: {"prune_num_heads": p, "prune_head_dims": not p, "head_pruning_ratio": h}
                         for k, (p, h) in VARIANTS.items()},
            "taylor": f"model.eval(); model.zero_grad(); for each of {TAYLOR_IMAGES // TAYLOR_BATCH} batches of "
                      f"{TAYLOR_BATCH} (first {TAYLOR_IMAGES} train images): F.cross_entropy(model(x), y).backward() "
                      "(gradients accumulate); then MetaPruner + step on a copy carrying these .grad",
            "ratio_search": f"scan r = {GRID_STEP}, {2 * GRID_STEP:.2f}, ... <= {R_MAX} to the first r with MACs < target, "
                            f"then bisection (tolerance {BISECT_TOL}) between it and the previous grid point; each trial "
                            "on a fresh deepcopy; of the two bracketing ratios the closer in MACs is used (global "
                            "pruning is not monotone in r for large r: TP leaves a group whole instead of emptying it)",
        },
        "selection": "per scope: best_heads = heads variant with the higher acc_10k, best = better of head_dims and "
                     "best_heads; 'best' = best over scopes; all by acc_10k (test-set selection: optimistic for TP)",
        "threads": args.threads,
        "runtime_s": round(runtime, 1),
        "results": results,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2) + "\n")

    print()
    print(f"unpruned: {params0} params, {macs0} MACs, acc 10k {acc0_10k:.2%}, acc@1000 {acc0_1k:.2%}")
    hdr = (f"{'criterion':9s} {'target':>6s} {'scope/variant':18s} {'ratio':>8s} {'MACs':>9s} {'xMACs':>6s} "
           f"{'params':>7s} {'acc10k':>7s} {'acc1k':>6s}")
    print(hdr)
    print("-" * len(hdr))
    for e in results:
        for name, v in e["variants"].items():
            if "error" in v:
                print(f"{e['criterion']:9s} {e['target_fraction']:>6.0%} {name:18s} failed: {v['error']}")
                continue
            bs = e["best_by_scope"][v["scope"]]
            mark = " **" if name == e["best"] else (" *" if name == bs["best"] else (" h" if name == bs["best_heads"] else ""))
            print(f"{e['criterion']:9s} {e['target_fraction']:>6.0%} {name:18s} {v['pruning_ratio']:8.5f} {v['macs']:9d} "
                  f"{v['macs_fraction']:6.3f} {v['params']:7d} {v['acc_10k']:7.2%} {v['acc_1000']:6.1%}{mark}")
    print("(** best overall, * best in its scope, h best heads variant in its scope; selection by acc_10k)")
    print(f"wrote {out_path} in {runtime:.0f}s ({P.trials} pruning trials, {args.threads} threads)")


if __name__ == "__main__":
    main()
