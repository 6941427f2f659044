#!/usr/bin/env python3
"""Torch-Pruning 1.6.1 + a PyTorch distillation fine-tune, the anchor of scripts/bench/distill.ts.

The Fashion-MNIST demo ViT (tests/fixtures/torch/fmnist_vit.pt) is pruned by Torch-Pruning to a
share of its MACs (default 20 %) exactly as scripts/anchor/accuracy_baseline.py does (global
ranking, L2 and Taylor, the head-dim and the two whole-head variants, pruning ratio searched to the
target), then every variant is distilled from the unpruned model with the same steps, data, loss
and optimizer as our distillation (src/distill/):

- data: the first N training images (default 8192), no labels; 10 % held out (at least one
  sample), the split and the batch order drawn from the same seeded generator (mulberry32, ported
  bit for bit) as ours, so both see the same images in the same batches;
- loss: T^2 * KL(softmax(teacher / T) || softmax(student / T)), mean over the batch (T = 2);
- AdamW (betas 0.9 / 0.999, eps 1e-8), weight decay 0.01 on Linear and Conv weights only, peak lr
  5e-4 after a linear warm-up over 5 % of the steps, then cosine decay to 0;
- early stopping: the held-out loss every tenth of the steps, the best weights kept, stop after
  3 scores without improvement.

Each distilled model is scored on the 10 000 test images. The best variant is picked by test
accuracy after distillation (optimistic for Torch-Pruning, as in accuracy_baseline.py).

Writes bench/torch_pruning_distill.json.

Usage: .venv/bin/python scripts/anchor/distill_baseline.py [--target 0.2] [--samples 8192]
       [--steps 1000] [--batch 32] [--lr 5e-4] [--temperature 2] [--seed 0] [--threads 2]
       [--data-dir DIR] [--out PATH]
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

import torch
import torch.nn.functional as F

SCRIPT_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPT_DIR))
from accuracy_baseline import (  # noqa: E402
    DEFAULT_DATA_DIR, FIXTURE, TAYLOR_IMAGES, VARIANTS, Pruning, accumulate_taylor_grads, accuracy,
    load_split, structure,
)
from torch_pruning_anchor import FIXTURES_DIR, REPO_ROOT, build  # noqa: E402

warnings.filterwarnings("ignore")

M32 = 0xFFFFFFFF


def mulberry32(seed: int):
    """The generator of src/distill/mod.ts: the same numbers for the same seed."""
    s = seed & M32

    def imul(a, b):
        return (a * b) & M32

    def rng():
        nonlocal s
        s = (s + 0x6D2B79F5) & M32
        t = s
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & M32
        return ((t ^ (t >> 14)) & M32) / 4294967296

    return rng


def shuffle(a: list, rng) -> list:
    for i in range(len(a) - 1, 0, -1):
        j = math.floor(rng() * (i + 1))
        a[i], a[j] = a[j], a[i]
    return a


def js_round(x: float) -> int:
    return math.floor(x + 0.5)


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    if step <= warmup:
        return peak * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def kl_rows(student, teacher, T):
    """Per-row T^2 * KL(softmax(t/T) || softmax(s/T))."""
    log_p = F.log_softmax(teacher / T, dim=-1)
    log_q = F.log_softmax(student / T, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1) * T * T


def distill(student, teacher_out, x, a):
    """Our training loop (src/distill/mod.ts), in PyTorch."""
    n = len(x)
    rng = mulberry32(a.seed)
    order = shuffle(list(range(n)), rng)
    held = max(1, js_round(0.1 * n))
    held_out = sorted(order[:held])
    train = order[held:]
    bs = min(a.batch, len(train))
    steps = a.steps
    warmup = min(js_round(steps * 0.05), steps)
    every = max(1, math.ceil(steps / 10))
    patience = 3
    decay = [p for name, p in student.named_parameters()
             if p.ndim >= 2 and name.endswith(".weight")]
    rest = [p for name, p in student.named_parameters()
            if not (p.ndim >= 2 and name.endswith(".weight"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8)

    def score():
        student.eval()
        with torch.no_grad():
            total = 0.0
            for s in range(0, len(held_out), 256):
                idx = held_out[s:s + 256]
                total += float(kl_rows(student(x[idx]), teacher_out[idx], a.temperature).sum())
        student.train()
        return total / len(held_out)

    before = score()
    best, best_step, stale, kept = before, 0, 0, copy.deepcopy(student.state_dict())
    step, cursor, stopped = 0, len(train), "steps"
    t0 = time.perf_counter()
    student.train()
    while step < steps:
        if cursor + bs > len(train):
            shuffle(train, rng)
            cursor = 0
        idx = train[cursor:cursor + bs]
        cursor += bs
        loss = kl_rows(student(x[idx]), teacher_out[idx], a.temperature).mean()
        step += 1
        for g in opt.param_groups:
            g["lr"] = learning_rate(step, steps, a.lr, warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            now = score()
            print(f"  step {step}/{steps}: held-out {now:.4f}", flush=True)
            if now < best:
                best, best_step, stale = now, step, 0
                kept = copy.deepcopy(student.state_dict())
            else:
                stale += 1
            if stale >= patience:
                stopped = "early-stop"
                break
    seconds = time.perf_counter() - t0
    if best_step != step:
        student.load_state_dict(kept)
    return {"steps": step, "stopped": stopped, "best_step": best_step,
            "held_out": {"before": before, "after": best}, "seconds": seconds,
            "ms_per_step": 1000 * seconds / max(1, step),
            "samples": {"train": len(train), "held_out": len(held_out)}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    ap.add_argument("--target", type=float, default=0.2, help="MAC share of the original")
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--criteria", default="l2,taylor")
    ap.add_argument("--out", default=str(REPO_ROOT / "bench" / "torch_pruning_distill.json"))
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    meta = json.loads((FIXTURES_DIR / "fixtures.json").read_text())["fixtures"][FIXTURE]
    mean, std = meta["normalization"]["mean"], meta["normalization"]["std"]
    d = Path(a.data_dir)
    x_te, y_te = load_split(d, "t10k", mean, std)
    x_cal, _ = load_split(d, "train", mean, std, a.samples)  # labels not used
    x_tay, y_tay = load_split(d, "train", mean, std, TAYLOR_IMAGES)

    base = build(meta)
    example = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    grads = accumulate_taylor_grads(base, x_tay, y_tay)
    P = Pruning(base, grads, example)
    macs0 = P.macs(base)
    acc0, _ = accuracy(base, x_te, y_te)
    with torch.no_grad():
        teacher_out = torch.cat([base(x_cal[i:i + 256]) for i in range(0, len(x_cal), 256)])
    target = round(a.target * macs0)
    print(f"unpruned {acc0:.2%}; target {a.target:.0%} of {macs0} MACs", flush=True)

    rows = []
    for crit in a.criteria.split(","):
        for var in VARIANTS:
            t0 = time.perf_counter()
            r, m, macs, _, errors = P.search("global", crit, var, target)
            print(f"{crit} global/{var}: r={r:.4f} after {time.perf_counter() - t0:.1f} s of search",
                  flush=True)
            if r == 0.0:
                rows.append({"criterion": crit, "variant": var, "error": "; ".join(errors)})
                print(f"{crit} {var}: no pruned model", flush=True)
                continue
            pruned_acc, _ = accuracy(m, x_te, y_te)
            report = distill(m, teacher_out, x_cal, a)
            healed_acc, _ = accuracy(m, x_te, y_te)
            row = {"criterion": crit, "variant": f"global/{var}", "pruning_ratio": r,
                   "macs": macs, "macs_fraction": macs / macs0, "structure": structure(m),
                   "accuracy": {"pruned": pruned_acc, "distilled": healed_acc}, "distill": report}
            rows.append(row)
            print(f"{crit:6s} global/{var:10s} MACs {macs / macs0:.3f}: {pruned_acc:.2%} -> "
                  f"{healed_acc:.2%} after {report['steps']} steps ({report['stopped']}, best "
                  f"{report['best_step']}) in {report['seconds']:.1f} s "
                  f"({report['ms_per_step']:.1f} ms/step)", flush=True)
    ok = [x for x in rows if "accuracy" in x]
    best = max(ok, key=lambda x: x["accuracy"]["distilled"]) if ok else None
    out = {
        "description": "Torch-Pruning 1.6.1 + PyTorch distillation with the settings of "
                       "scripts/bench/distill.ts; generated by scripts/anchor/distill_baseline.py",
        "versions": {"torch": torch.__version__.split("+")[0], "torch_pruning": "1.6.1",
                     "python": platform.python_version()},
        "settings": {k: v for k, v in vars(a).items() if k != "out"}, "unpruned": acc0,
        "macs": macs0, "rows": rows,
        "best": best and {"criterion": best["criterion"], "variant": best["variant"],
                          "accuracy": best["accuracy"]},
    }
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    if best:
        print(f"best: {best['criterion']} {best['variant']} {best['accuracy']['distilled']:.2%}")


if __name__ == "__main__":
    main()
