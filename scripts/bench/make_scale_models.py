#!/usr/bin/env python3
"""Exports timm ViTs with random weights for the scale benchmark (scripts/bench/scale.ts).

    .venv/bin/python scripts/bench/make_scale_models.py OUT_DIR vit_base_patch16_224 [...]

Each model goes to OUT_DIR/<name>.onnx (torch.onnx, TorchScript exporter, opset 17, batch 1).
A model over 2 GB (ViT-H) is written with its tensors in one external data file,
OUT_DIR/<name>.onnx.data, as protobuf cannot hold it inline.
"""
import os
import sys
import tempfile
import warnings

import onnx
import timm
import torch

warnings.filterwarnings("ignore")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name in sys.argv[2:]:
        path = os.path.join(out, f"{name}.onnx")
        if os.path.exists(path):
            print("exists", path)
            continue
        torch.manual_seed(0)
        m = timm.create_model(name, pretrained=False).eval()
        size = m.default_cfg["input_size"]
        x = torch.randn(1, *size)
        params = sum(p.numel() for p in m.parameters())
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            raw = os.path.join(tmp, "model.onnx")
            with torch.no_grad():
                torch.onnx.export(m, (x,), raw, dynamo=False, opset_version=17,
                                  input_names=["x"], output_names=["y"])
            del m
            model = onnx.load(raw, load_external_data=True)
            external = params * 4 > 1.9 * 2**30
            onnx.save(model, path + ".tmp", save_as_external_data=external,
                      all_tensors_to_one_file=True, location=f"{name}.onnx.data",
                      size_threshold=1024)
            os.replace(path + ".tmp", path)
        print("ok", path, params, "external" if external else "inline")


if __name__ == "__main__":
    main()
