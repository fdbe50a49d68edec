"""Exports torchvision classifiers to ONNX for the ONNX import tests (tests/ConvKit.Tests/Formats/Onnx).

usage: make_onnx_fixtures.py OUT_DIR NAME[:SIZE[:OPSET]] ...

NAME is a torchvision classifier or "convtranspose" (a small stack of ConvTranspose2d, see convtranspose_net).

For each model: seeded random weights (torch.manual_seed(0)) with non-trivial batch-norm statistics, eval mode,
exported with training=TrainingMode.PRESERVE and do_constant_folding=False, which keeps the BatchNormalization nodes
(the default eval export folds them into the convolutions); NAME_folded exports the default way. Writes NAME.onnx,
NAME.input.bin (float32, 2 x 3 x SIZE x SIZE, NCHW) and NAME.torch.bin (the model's own output on it), and NAME.json
with the shapes. Needs Debian's python3-torch and python3-torchvision (1.13 / 0.14).
"""
import json
import os
import sys

import torch
import torchvision.models as tvm


def convtranspose_net():
    """ConvTranspose2d in the ways ONNX spells it: pads with output_padding, groups, dilation, no bias, a kernel
    shorter than its stride, pads that differ between the axes."""
    nn = torch.nn
    return nn.Sequential(
        nn.ConvTranspose2d(3, 8, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1, groups=2),
        nn.ConvTranspose2d(8, 6, 3, stride=1, padding=2, dilation=2, bias=False),
        nn.ConvTranspose2d(6, 4, 2, stride=3),
        nn.ConvTranspose2d(4, 4, 5, stride=2, padding=(1, 2), output_padding=(1, 0)),
        nn.Flatten())


def build(name):
    base = name[:-len("_folded")] if name.endswith("_folded") else name
    if base == "convtranspose":
        torch.manual_seed(0)
        return convtranspose_net().eval()
    kwargs = {}
    if base == "googlenet":
        kwargs = dict(aux_logits=False, init_weights=False)
    if base == "inception_v3":
        kwargs = dict(aux_logits=False, init_weights=False)
    torch.manual_seed(0)
    m = getattr(tvm, base)(weights=None, **kwargs)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d) or isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) * 0.5 + 0.75)
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) * 0.5 + 0.75)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
    return m.eval()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for spec in sys.argv[2:]:
        parts = spec.split(":")
        name = parts[0]
        size = int(parts[1]) if len(parts) > 1 else 224
        opset = int(parts[2]) if len(parts) > 2 else 13
        tag = name if len(parts) < 3 else f"{name}_op{opset}"
        m = build(name)
        torch.manual_seed(2)
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            y = m(x)
        path = os.path.join(out, tag + ".onnx")
        folded = name.endswith("_folded")
        torch.onnx.export(m, x[:1], path, opset_version=opset, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          training=torch.onnx.TrainingMode.EVAL if folded else torch.onnx.TrainingMode.PRESERVE,
                          do_constant_folding=folded)
        x.numpy().astype("<f4").tofile(os.path.join(out, tag + ".input.bin"))
        y.numpy().astype("<f4").tofile(os.path.join(out, tag + ".torch.bin"))
        with open(os.path.join(out, tag + ".json"), "w") as f:
            json.dump({"input": list(x.shape), "output": list(y.shape),
                       "params": sum(p.numel() for p in m.parameters())}, f)
        print(tag, list(y.shape), flush=True)


if __name__ == "__main__":
    main()
