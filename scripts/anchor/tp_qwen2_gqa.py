#!/usr/bin/env python3
"""What Torch-Pruning 1.6.1 does on a grouped-query decoder with q/k/v biases (Qwen2-style).

    .venv/bin/python scripts/anchor/tp_qwen2_gqa.py [--layers 2] [--timeout 600]

A Qwen2ForCausalLM from a small config (hidden 64, 4 query heads, 2 KV heads, q/k/v biases,
random weights). Two ways of asking Torch-Pruning for half the heads, each under a watchdog:
- "num_heads": q_proj with the query heads, k_proj and v_proj with the KV heads (its LLM
  example's way), prune_num_heads, head_pruning_ratio 0.5;
- "out_channel_groups": the same with k/v grouped (its GQA option, where the version has it).
For each: whether the DependencyGraph was built and how long it took, the heads and KV heads
left, whether the pruned model still runs a forward pass, and the error if not. One JSON line
per attempt. The same decision in this tool: `deno run -A mod.ts qwen2.onnx --prune-num-heads
--head-pruning-ratio 0.5` (query heads inside every KV group; KV heads stay).
"""
import argparse
import json
import signal
import time
import traceback
import warnings

import torch
import torch_pruning as tp
from transformers import Qwen2Config, Qwen2ForCausalLM

warnings.filterwarnings("ignore")


class Timeout(Exception):
    pass


def on_alarm(_signum, frame):
    """Stops the attempt, saying where Torch-Pruning was."""
    where = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}"
             for f in traceback.extract_stack(frame)[-4:]]
    raise Timeout(" <- ".join(reversed(where)))


def build(layers):
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=100, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=64, use_cache=False)
    return Qwen2ForCausalLM(cfg).eval()


def attempt(way, layers, timeout):
    m = build(layers)
    ids = torch.randint(0, 100, (1, 16), generator=torch.Generator().manual_seed(1))
    attn = [layer.self_attn for layer in m.model.layers]
    num_heads = {}
    for a in attn:
        num_heads[a.q_proj] = m.config.num_attention_heads
        num_heads[a.k_proj] = m.config.num_key_value_heads
        num_heads[a.v_proj] = m.config.num_key_value_heads
    kwargs = dict(importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=0.0,
                  ignored_layers=[m.lm_head] + [a.o_proj for a in attn], num_heads=num_heads,
                  prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=0.5,
                  global_pruning=False)
    if way == "out_channel_groups":
        kwargs["out_channel_groups"] = {a.k_proj: m.config.num_key_value_heads for a in attn} | {
            a.v_proj: m.config.num_key_value_heads for a in attn}
    result = {"way": way, "torch_pruning": tp.__version__, "layers": layers}
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    t0 = time.perf_counter()
    try:
        pruner = tp.pruner.MetaPruner(m, (ids,), **kwargs)
        result["graph_s"] = round(time.perf_counter() - t0, 2)
        pruner.step()
        result["prune_s"] = round(time.perf_counter() - t0, 2)
        a0 = attn[0]
        result["heads"] = a0.q_proj.out_features // a0.head_dim
        result["kv_heads"] = a0.k_proj.out_features // a0.head_dim
        for a in attn:  # HF reads the head counts from its config
            heads, kv = a.q_proj.out_features // a.head_dim, a.k_proj.out_features // a.head_dim
            a.num_key_value_groups = max(1, heads // max(kv, 1))
            a.config.num_attention_heads, a.config.num_key_value_heads = heads, kv
        try:
            with torch.no_grad():
                result["forward"] = list(m(ids).logits.shape)
        except Exception as e:  # the pruned model itself no longer runs
            result["forward_error"] = f"{type(e).__name__}: {e}"[:300]
    except Timeout as e:
        result["error"] = f"no result within {timeout} s"
        result["stuck_in"] = str(e)
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"[:300]
        result["where"] = traceback.format_exc(limit=-2)[-400:]
    finally:
        signal.alarm(0)
    result["total_s"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(result), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--timeout", type=int, default=600)
    a = p.parse_args()
    for way in ("num_heads", "out_channel_groups"):
        attempt(way, a.layers, a.timeout)


if __name__ == "__main__":
    main()
