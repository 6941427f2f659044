#!/usr/bin/env python3
"""Exports a Llama-style decoder (GQA, RoPE, RMSNorm, SwiGLU) built with HF transformers from a
config, random weights, in float16, with its tensors in one external data file — the large
models of the scale benchmark.

    .venv/bin/python scripts/bench/make_llama.py OUT_DIR NAME [tiny|1b|7b] [--dynamic]
    .venv/bin/python scripts/bench/make_llama.py --check-stacking OUT_DIR

1b: TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads / 4 KV heads, MLP 5632);
7b: Mistral-7B's shape as a Llama (hidden 4096, 32 layers, 32 heads / 8 KV heads, MLP 14336),
7.24 G parameters, 14.5 GB.
Inputs input_ids and attention_mask [1, 16] (--dynamic: [batch, sequence], for calibration data of
any length); output logits; no KV cache; TorchScript exporter, opset 17.

The exporter holds the weights more than once (the model, then transposed copies it folds into
MatMul initializers), which does not fit 7B in 24 GB. So 7b is exported with two decoder layers
and the ONNX graph of the second is repeated (fresh random weights, HF's init: normal(0, 0.02),
norms 1), the data file written tensor by tensor. --check-stacking verifies the repetition: a
tiny model stacked from two to four layers (weights copied) gives HF's four-layer logits.
"""
import os
import sys
import tempfile
import warnings

import onnx
import torch
from transformers import LlamaConfig, LlamaForCausalLM

warnings.filterwarnings("ignore")

import numpy as np
from onnx import numpy_helper

SHAPES = {
    "tiny": dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=8,
                 num_key_value_heads=2, intermediate_size=704),
    "1b": dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, intermediate_size=5632),
    "7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, intermediate_size=14336),
}


class Logits(LlamaForCausalLM):
    def forward(self, input_ids, attention_mask):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                               use_cache=False).logits


def build(shape):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, max_position_embeddings=2048, **shape)
    config._attn_implementation = "eager"
    torch.set_default_dtype(torch.float16)  # never the float32 model: 7B would not fit
    try:
        m = Logits(config).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    return m


def export(m, path, dynamic=False):
    ids = torch.zeros(1, 16, dtype=torch.long)
    mask = torch.ones(1, 16, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch", 1: "sequence"}} if dynamic else None
    with torch.no_grad():
        torch.onnx.export(m, (ids, mask), path, dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], dynamic_axes=axes)


def stack(model, layers, copy_weights=False, seed=1):
    """Repeats the last decoder layer of a two-layer export until there are `layers`; returns
    the model (new initializers hold no data) and, per new initializer, how to fill it."""
    g = model.graph
    prefix = "/model/layers.1/"
    body = [n for n in g.node if n.name.startswith(prefix)]
    made = {o for n in body for o in n.output}
    inits = {t.name: t for t in g.initializer}
    entry = "/model/layers.0/Add_1_output_0"
    exit_ = prefix + "Add_1_output_0"
    if exit_ not in made or not any(entry in n.input for n in body):
        raise SystemExit("not the expected two-layer Llama export (layer boundary not found)")
    # Norm weights of layer 1 are Identity copies of layer 0's (the exporter's dedup of equal
    # initializers): each copy gets its own, as a model with distinct weights would have.
    identity = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity"}
    fills = {}
    new_nodes, new_inits = [], []
    last = exit_
    for k in range(2, layers):
        rename = {}
        for n in body:
            for o in n.output:
                rename[o] = o.replace(prefix, f"/model/layers.{k}/")
        for n in body:
            for i in n.input:
                if i in inits and i not in rename:
                    rename[i] = f"{i}_layers.{k}"
                    src = inits[i]
                    t = onnx.TensorProto(name=rename[i], data_type=src.data_type, dims=src.dims)
                    new_inits.append(t)
                    fills[t.name] = ("copy", i) if copy_weights else ("normal", None)
                elif i.startswith("model.layers.1.") and i in identity and i not in rename:
                    rename[i] = i.replace("model.layers.1.", f"model.layers.{k}.")
                    src = inits[identity[i]]
                    t = onnx.TensorProto(name=rename[i], data_type=src.data_type, dims=src.dims)
                    new_inits.append(t)
                    fills[t.name] = ("copy", identity[i]) if copy_weights else ("ones", None)
        rename[entry] = last
        for n in body:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            c.name = n.name.replace(prefix, f"/model/layers.{k}/")
            c.input[:] = [rename.get(i, i) for i in n.input]
            c.output[:] = [rename[o] for o in n.output]
            new_nodes.append(c)
        last = rename[exit_]
    end = max(i for i, n in enumerate(g.node) if n.name.startswith(prefix)) + 1
    tail = list(g.node[end:])
    for n in tail:
        n.input[:] = [last if i == exit_ else i for i in n.input]
    nodes = list(g.node[:end]) + new_nodes + tail
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new_inits)
    return fills


def save_streaming(model, fills, path, location, seed=1):
    """Writes every initializer to one data file, tensor by tensor (new ones generated there)."""
    rng = np.random.default_rng(seed)
    data = os.path.join(os.path.dirname(path), location)
    sources = {src for how, src in fills.values() if how == "copy"}
    values = {}  # originals that copies are made from
    with open(data + ".tmp", "wb") as f:
        for t in model.graph.initializer:
            how = fills.get(t.name)
            if how is None:
                arr = numpy_helper.to_array(t)
                if t.name in sources:
                    values[t.name] = arr
                if arr.nbytes < 1024:
                    continue  # small ones stay in the model file, as onnx.save does
            elif how[0] == "copy":
                arr = values[how[1]]
            elif how[0] == "ones":
                arr = np.ones(tuple(t.dims), dtype=np.float16)
            else:
                n = int(np.prod(t.dims))
                arr = (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float16)
            if arr.nbytes < 1024:
                t.raw_data = np.ascontiguousarray(arr).tobytes()
                continue
            offset = f.tell()
            f.write(np.ascontiguousarray(arr).tobytes())
            t.ClearField("raw_data")
            del t.float_data[:]
            del t.int64_data[:]
            del t.int32_data[:]
            t.data_location = onnx.TensorProto.EXTERNAL
            del t.external_data[:]
            for k, v in (("location", location), ("offset", str(offset)),
                         ("length", str(arr.nbytes))):
                e = t.external_data.add()
                e.key, e.value = k, v
    onnx.save(model, path + ".tmp")
    os.replace(data + ".tmp", data)
    os.replace(path + ".tmp", path)


def check_stacking(out):
    """Stacks a tiny two-layer export to four layers (weights copied from layer 1) and compares
    its logits with HF's four-layer model whose layers 2 and 3 are copies of layer 1."""
    import onnxruntime as ort
    shape = dict(SHAPES["tiny"], num_hidden_layers=2)
    m2 = build(shape)
    m4 = build(dict(shape, num_hidden_layers=4))
    m4.load_state_dict(m2.state_dict(), strict=False)
    for k in (2, 3):
        m4.model.layers[k].load_state_dict(m2.model.layers[1].state_dict())
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        raw = os.path.join(tmp, "two.onnx")
        export(m2, raw)
        model = onnx.load(raw)
        fills = stack(model, 4, copy_weights=True)
        path = os.path.join(tmp, "four.onnx")
        save_streaming(model, fills, path, "four.onnx.data")
        ids = torch.randint(0, 32000, (1, 16))
        mask = torch.ones(1, 16, dtype=torch.long)
        got = ort.InferenceSession(path).run(None, {"input_ids": ids.numpy(),
                                                    "attention_mask": mask.numpy()})[0]
    with torch.no_grad():
        want = m4(ids, mask).float().numpy()
    err = float(np.abs(got.astype(np.float32) - want).max())
    print("stacked four layers vs HF four layers: max |diff| =", err)
    if not err < 1e-2:
        raise SystemExit("stacking does not reproduce the HF model")


def main():
    if sys.argv[1] == "--check-stacking":
        check_stacking(sys.argv[2])
        return
    dynamic = "--dynamic" in sys.argv
    out, name, size = [a for a in sys.argv[1:] if a != "--dynamic"][:3]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.onnx")
    shape = SHAPES[size]
    layers = shape["num_hidden_layers"]
    stacked = layers > 22  # more than this machine's memory takes through the exporter
    m = build(dict(shape, num_hidden_layers=2) if stacked else shape)
    params = sum(p.numel() for p in m.parameters())
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        raw = os.path.join(tmp, "model.onnx")
        export(m, raw, dynamic)
        del m
        model = onnx.load(raw, load_external_data=True)
        fills = stack(model, layers) if stacked else {}
        if stacked:
            per_layer = sum(int(np.prod(t.dims)) for t in model.graph.initializer
                            if t.name in fills) // (layers - 2)
            params += per_layer * (layers - 2)
        save_streaming(model, fills, path, f"{name}.onnx.data")
    print("ok", path, params)


if __name__ == "__main__":
    main()
