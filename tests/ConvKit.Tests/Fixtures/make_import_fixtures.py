#!/usr/bin/python3
"""Reference fixtures for ConvKit's Keras HDF5 and torchvision weight import (ConvKit.Tests.Saving.*Import*).

Keras part: the Keras architectures are written out again here, layer by layer, in PyTorch (float64), following
keras.applications' code (vgg16.py, resnet.py, inception_v3.py) and the seeds' LeNet-5/GoogLeNet: Keras 'same'
padding (asymmetric when the total is odd: the extra row/column goes after), BatchNormalization epsilon (1e-3,
1.001e-5 in ResNet), Flatten in (H, W, C) order, Keras' automatic layer names (conv2d, conv2d_1, ...). Weights are
seeded random float32 (He-normal kernels; LeCun-normal classifiers, about Keras' default scale: logits up to 2-15).
A network with BatchNormalization is built first in FP32 on calibration images, whose statistics at each layer,
slightly perturbed, become the moving statistics, as a trained model's are population statistics; other (test)
images then see a network conditioned like a trained one, and its float64 outputs on them are the reference. The
full-size models run at their native input sizes: with random weights the relative FP32 error grows about 1.35x per
ResNet block and 1.55x per Inception module, and at 64x64 or 139x139 the logits move by more than 1e-4 in any FP32
implementation (PyTorch's own included: --fp32-check shows it layer by layer); the global average over 7x7 or 8x8
maps keeps them within. The weights are written exactly as
keras.applications' .h5 files are laid out (root attribute layer_names, per-layer weight_names, datasets
'<layer>/<weight>:0', HWIO conv kernels, (in, out) dense kernels); inputs (NHWC) and outputs go to a safetensors file
(written by hand: u64 header length, JSON, raw little-endian data).

torchvision part: torchvision's own models (resnet50, alexnet, vgg16, googlenet and inception_v3 with their auxiliary
heads in the state dict) with seeded random weights, BN statistics drawn around the fixture batch's and weights scaled
to logits of a trained model's spread, their state dicts as safetensors (as the HF hub / timm publish them), and their
outputs in float64; and a LeNet-5 written as a plain PyTorch module, for loading with an explicit key mapping.

Usage (Debian's interpreter: python3-torch, python3-torchvision, python3-h5py, python3-numpy):
  /usr/bin/python3 make_import_fixtures.py                 # small committed fixtures -> Fixtures/Import/
  /usr/bin/python3 make_import_fixtures.py --full DIR      # Keras vgg16/googlenet/resnet50/inception_v3 -> DIR
  /usr/bin/python3 make_import_fixtures.py --full DIR --fp32-check  # also PyTorch's FP32 error, layer by layer
  /usr/bin/python3 make_import_fixtures.py --torchvision DIR  # torchvision models and a PyTorch LeNet-5 -> DIR
"""
import json
import math
import os
import struct
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Import")
torch.set_num_threads(1)


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


class Keras:
    """Builds a Keras model eagerly on one batch (NCHW torch tensors) and records its weights and layer outputs.

    With `calibration` the batch is calibration images, and BatchNormalization's moving statistics are their
    statistics at that layer (slightly perturbed): a trained network's are population statistics, so images it was
    not built on see a network conditioned like a trained one. With `replay` (a Keras built before) the weights are
    not drawn but taken from it, in order: the same network, run on other images or in another dtype; `local` then
    feeds every layer the replayed network's output of its inputs, to measure each layer's own rounding.
    """

    def __init__(self, seed, dtype=torch.float64, calibration=False, replay=None, local=False, record=False):
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.calibration = calibration
        self.layers = []  # (name, [(weight name, float32 array in Keras layout)]) in creation order
        self.counters = {}
        self.record = record
        self.outputs = {}  # name -> output, when recording
        self.replay = iter(replay.layers) if replay is not None else None
        self.reference = replay.outputs if (replay is not None and local) else None

    def name(self, prefix, name):
        if name is not None:
            return name
        n = self.counters.get(prefix, 0)
        self.counters[prefix] = n + 1
        return prefix if n == 0 else f"{prefix}_{n}"

    def add(self, prefix, name, make=list):
        """Names the layer and returns its weights: make() draws them (or replays the recorded ones)."""
        name = self.name(prefix, name)
        if self.replay is not None:
            recorded, weights = next(self.replay)
            assert recorded == name, (recorded, name)
        else:
            weights = make()
        self.layers.append((name, weights))
        return name, [self.t(w) for _, w in weights]

    def out(self, name, y):
        """Records a layer's output (local replay: passes the reference output on instead)."""
        if self.record:
            self.outputs[name] = y
        if self.reference is not None:
            return self.reference[name].to(self.dtype)
        return y

    def normal(self, std, *shape):
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def t(self, a):
        return torch.from_numpy(a).to(self.dtype)

    @staticmethod
    def same_pads(size, k, s, d=1):
        k = (k - 1) * d + 1
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return total // 2, total - total // 2

    def pad_same(self, x, k, s, value=0.0):
        top, bottom = self.same_pads(x.shape[2], k[0], s[0])
        left, right = self.same_pads(x.shape[3], k[1], s[1])
        return F.pad(x, (left, right, top, bottom), value=value)

    def conv_pads(self, x, k, s):
        """Keras 'same' padding as F.conv2d's own padding where it is symmetric (no padded copy), else padded."""
        (top, bottom), (left, right) = self.same_pads(x.shape[2], k[0], s[0]), self.same_pads(x.shape[3], k[1], s[1])
        if (top, left) == (bottom, right):
            return x, (top, left)
        return F.pad(x, (left, right, top, bottom)), 0

    @staticmethod
    def activate(x, activation):
        if activation is None:
            return x
        if activation == "relu":
            return F.relu(x, inplace=True)  # only on a layer's own fresh output
        if activation == "softmax":
            return torch.softmax(x, dim=-1)
        raise ValueError(activation)

    def conv2d(self, x, filters, kernel, strides=1, padding="valid", use_bias=True, activation=None, name=None):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        s = (strides, strides) if isinstance(strides, int) else strides
        cin = x.shape[1]

        def make():
            k = self.normal(math.sqrt(2.0 / (kh * kw * cin)), kh, kw, cin, filters)  # HWIO
            return [("kernel:0", k)] + ([("bias:0", self.normal(0.1, filters))] if use_bias else [])

        name, w = self.add("conv2d", name, make)
        x, pads = self.conv_pads(x, (kh, kw), s) if padding == "same" else (x, 0)
        y = F.conv2d(x, w[0].permute(3, 2, 0, 1), w[1] if use_bias else None, stride=s, padding=pads)
        return self.out(name, self.activate(y, activation))

    def batch_norm(self, x, epsilon=1e-3, center=True, scale=True, name=None):
        c = x.shape[1]

        def make():
            # Moving statistics of the calibration images, then perturbed (a trained model's moving averages are near,
            # not at, the statistics of any one batch).
            assert self.calibration, "BatchNormalization's moving statistics need calibration images"
            mean = x.mean(dim=(0, 2, 3)).numpy()
            var = x.var(dim=(0, 2, 3)).numpy()
            mm = (mean + self.rng.standard_normal(c) * 0.1 * np.sqrt(var)).astype(np.float32)
            mv = np.maximum(var * self.rng.uniform(0.8, 1.25, c), 1e-2).astype(np.float32)
            gamma = self.rng.uniform(0.8, 1.2, c).astype(np.float32)
            beta = self.normal(0.1, c)
            return ([("gamma:0", gamma)] if scale else []) + ([("beta:0", beta)] if center else []) + \
                [("moving_mean:0", mm), ("moving_variance:0", mv)]

        name, w = self.add("batch_normalization", name, make)
        mm, mv = (v[None, :, None, None] for v in w[-2:])
        factor = 1 / torch.sqrt(mv + epsilon) * (w[0][None, :, None, None] if scale else 1)
        y = (x - mm).mul_(factor)
        if center:
            y.add_(w[1 if scale else 0][None, :, None, None])
        return self.out(name, y)

    def dense(self, x, units, activation=None, name=None):
        fan_in = x.shape[1]
        std = math.sqrt((2.0 if activation == "relu" else 1.0) / fan_in)
        name, (k, b) = self.add("dense", name, lambda: [
            ("kernel:0", self.normal(std, fan_in, units)),  # (in, out)
            ("bias:0", self.normal(0.1, units))])
        return self.out(name, self.activate(x @ k + b, activation))

    def flatten(self, x, name=None):
        name, _ = self.add("flatten", name)
        return self.out(name, x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))  # Keras: (H, W, C) order

    def relu(self, x, name=None):
        name, _ = self.add("activation", name)
        return self.out(name, F.relu(x))

    def dropout(self, x, name=None):
        name, _ = self.add("dropout", name)
        return self.out(name, x)

    def max_pool(self, x, pool, strides=None, padding="valid", name=None):
        strides = strides or pool
        name, _ = self.add("max_pooling2d", name)
        if padding == "same":
            x = self.pad_same(x, (pool, pool), (strides, strides), value=-math.inf)
        return self.out(name, F.max_pool2d(x, pool, strides))

    def avg_pool(self, x, pool, strides=None, padding="valid", name=None):
        strides = strides or pool
        name, _ = self.add("average_pooling2d", name)
        if padding != "same":
            return self.out(name, F.avg_pool2d(x, pool, strides))
        # Keras averages over the window cells inside the input only.
        ones = torch.ones_like(x[:1, :1])
        total = F.avg_pool2d(self.pad_same(x, (pool, pool), (strides, strides)), pool, strides)
        count = F.avg_pool2d(self.pad_same(ones, (pool, pool), (strides, strides)), pool, strides)
        return self.out(name, total / count)

    def zero_pad(self, x, p, name=None):
        name, _ = self.add("zero_padding2d", name)
        return self.out(name, F.pad(x, (p, p, p, p)))

    def gap(self, x, name=None):
        name, _ = self.add("global_average_pooling2d", name)
        return self.out(name, x.mean(dim=(2, 3)))

    def concat(self, xs, name=None):
        name, _ = self.add("concatenate", name)
        return self.out(name, torch.cat(xs, dim=1))

    def add_(self, a, b, name=None):
        name, _ = self.add("add", name)
        return self.out(name, a + b)

    def write_h5(self, path):
        def names(xs):
            return np.array([x.encode("utf-8") for x in xs]) if xs else np.asarray([])

        with h5py.File(path, "w") as f:
            f.attrs["layer_names"] = names([n for n, _ in self.layers])
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = b"2.1.2"
            for layer, weights in self.layers:
                g = f.create_group(layer)
                full = [f"{layer}/{w}" for w, _ in weights]
                g.attrs["weight_names"] = names(full)
                for wn, (_, value) in zip(full, weights):
                    g.create_dataset(wn, data=value)


# ---------------------------------------------------------------- architectures (Keras' code, re-written)

def lenet5(k, x):
    """Seed 001: conv 6@5x5 same relu, max 2, conv 16@5x5 valid relu, max 2, flatten, 120, 84, 10 (logits)."""
    x = k.conv2d(x, 6, 5, padding="same", activation="relu")
    x = k.max_pool(x, 2)
    x = k.conv2d(x, 16, 5, activation="relu")
    x = k.max_pool(x, 2)
    x = k.flatten(x)
    x = k.dense(x, 120, activation="relu")
    x = k.dense(x, 84, activation="relu")
    return k.dense(x, 10)


GOOGLENET_MODULES = [  # the paper's Table 1: 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj; pooling before
    (64, 96, 128, 16, 32, 32, "inception3a", False), (128, 128, 192, 32, 96, 64, "inception3b", False),
    (192, 96, 208, 16, 48, 64, "inception4a", True), (160, 112, 224, 24, 64, 64, "inception4b", False),
    (128, 128, 256, 24, 64, 64, "inception4c", False), (112, 144, 288, 32, 64, 64, "inception4d", False),
    (256, 160, 320, 32, 128, 128, "inception4e", False), (256, 160, 320, 32, 128, 128, "inception5a", True),
    (384, 192, 384, 48, 128, 128, "inception5b", False),
]


def googlenet(k, x, last=None, classes=1000, activation="softmax"):
    """Seed 002's GoogLeNet (inception_v1, no batch norm), as the zoo's `googlenet`. ConvKit creates the 3x3/5x5
    convolution before its 1x1 reduction, and the pool projection before its pooling (C# evaluates the receiver
    before the argument), so the automatic names follow that order."""
    x = k.conv2d(x, 64, 7, strides=2, padding="same", activation="relu")
    x = k.max_pool(x, 3, 2, padding="same")
    x = k.conv2d(x, 192, 3, padding="same", activation="relu")
    x = k.max_pool(x, 3, 2, padding="same")
    for f1, r3, f3, r5, f5, pp, name, pool_before in GOOGLENET_MODULES:
        if pool_before:
            x = k.max_pool(x, 3, 2, padding="same")
        b1 = k.conv2d(x, f1, 1, padding="same", activation="relu")
        n3 = k.name("conv2d", None)
        b3 = _named_conv(k, n3, k.conv2d(x, r3, 1, padding="same", activation="relu"), f3, 3)
        n5 = k.name("conv2d", None)
        b5 = _named_conv(k, n5, k.conv2d(x, r5, 1, padding="same", activation="relu"), f5, 5)
        np_ = k.name("conv2d", None)
        bp = _named_conv(k, np_, k.max_pool(x, 3, 1, padding="same"), pp, 1)
        x = k.concat([b1, b3, b5, bp], name=name)
        if name == last:
            return x
    x = k.gap(x)
    x = k.dropout(x)
    return k.dense(x, classes, activation=activation)


def _named_conv(k, name, x, filters, kernel):
    return k.conv2d(x, filters, kernel, padding="same", activation="relu", name=name)


def resnet_block(k, x, filters, stride, conv_shortcut, name):
    eps = 1.001e-5
    if conv_shortcut:
        shortcut = k.conv2d(x, 4 * filters, 1, strides=stride, name=name + "_0_conv")
        shortcut = k.batch_norm(shortcut, eps, name=name + "_0_bn")
    else:
        shortcut = x
    x = k.conv2d(x, filters, 1, strides=stride, name=name + "_1_conv")
    x = k.relu(k.batch_norm(x, eps, name=name + "_1_bn"), name=name + "_1_relu")
    x = k.conv2d(x, filters, 3, padding="same", name=name + "_2_conv")
    x = k.relu(k.batch_norm(x, eps, name=name + "_2_bn"), name=name + "_2_relu")
    x = k.conv2d(x, 4 * filters, 1, name=name + "_3_conv")
    x = k.batch_norm(x, eps, name=name + "_3_bn")
    x = k.add_(shortcut, x, name=name + "_add")
    return k.relu(x, name=name + "_out")


def resnet50(k, x, stages=4, include_top=True, classes=1000, activation="softmax"):
    x = k.zero_pad(x, 3, name="conv1_pad")
    x = k.conv2d(x, 64, 7, strides=2, name="conv1_conv")
    x = k.relu(k.batch_norm(x, 1.001e-5, name="conv1_bn"), name="conv1_relu")
    x = k.zero_pad(x, 1, name="pool1_pad")
    x = k.max_pool(x, 3, 2, name="pool1_pool")
    for s, (filters, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)][:stages]):
        x = resnet_block(k, x, filters, 1 if s == 0 else 2, True, f"conv{s + 2}_block1")
        for b in range(2, blocks + 1):
            x = resnet_block(k, x, filters, 1, False, f"conv{s + 2}_block{b}")
    if include_top:
        x = k.gap(x, name="avg_pool")
        x = k.dense(x, classes, activation=activation, name="predictions")
    return x


def vgg16(k, x, classes=1000, activation="softmax"):
    for b, (filters, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for i in range(1, n + 1):
            x = k.conv2d(x, filters, 3, padding="same", activation="relu", name=f"block{b}_conv{i}")
        x = k.max_pool(x, 2, 2, name=f"block{b}_pool")
    x = k.flatten(x, name="flatten")
    x = k.dense(x, 4096, activation="relu", name="fc1")
    x = k.dense(x, 4096, activation="relu", name="fc2")
    return k.dense(x, classes, activation=activation, name="predictions")


def conv2d_bn(k, x, filters, rows, cols, padding="same", strides=1):
    x = k.conv2d(x, filters, (rows, cols), strides=strides, padding=padding, use_bias=False)
    x = k.batch_norm(x, scale=False)
    return k.relu(x)


def inception_v3(k, x, last=None, include_top=True, classes=1000, activation="softmax"):
    x = conv2d_bn(k, x, 32, 3, 3, strides=2, padding="valid")
    x = conv2d_bn(k, x, 32, 3, 3, padding="valid")
    x = conv2d_bn(k, x, 64, 3, 3)
    x = k.max_pool(x, 3, 2)
    x = conv2d_bn(k, x, 80, 1, 1, padding="valid")
    x = conv2d_bn(k, x, 192, 3, 3, padding="valid")
    x = k.max_pool(x, 3, 2)
    for pool, name in [(32, "mixed0"), (64, "mixed1"), (64, "mixed2")]:
        b1 = conv2d_bn(k, x, 64, 1, 1)
        b5 = conv2d_bn(k, conv2d_bn(k, x, 48, 1, 1), 64, 5, 5)
        b3 = conv2d_bn(k, conv2d_bn(k, conv2d_bn(k, x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
        bp = conv2d_bn(k, k.avg_pool(x, 3, 1, padding="same"), pool, 1, 1)
        x = k.concat([b1, b5, b3, bp], name=name)
        if name == last:
            return x
    b3 = conv2d_bn(k, x, 384, 3, 3, strides=2, padding="valid")
    bd = conv2d_bn(k, conv2d_bn(k, conv2d_bn(k, x, 64, 1, 1), 96, 3, 3), 96, 3, 3, strides=2, padding="valid")
    bp = k.max_pool(x, 3, 2)
    x = k.concat([b3, bd, bp], name="mixed3")
    if last == "mixed3":
        return x
    for f, name in [(128, "mixed4"), (160, "mixed5"), (160, "mixed6"), (192, "mixed7")]:
        b1 = conv2d_bn(k, x, 192, 1, 1)
        b7 = conv2d_bn(k, conv2d_bn(k, conv2d_bn(k, x, f, 1, 1), f, 1, 7), 192, 7, 1)
        bd = conv2d_bn(k, x, f, 1, 1)
        bd = conv2d_bn(k, bd, f, 7, 1)
        bd = conv2d_bn(k, bd, f, 1, 7)
        bd = conv2d_bn(k, bd, f, 7, 1)
        bd = conv2d_bn(k, bd, 192, 1, 7)
        bp = conv2d_bn(k, k.avg_pool(x, 3, 1, padding="same"), 192, 1, 1)
        x = k.concat([b1, b7, bd, bp], name=name)
        if name == last:
            return x
    b3 = conv2d_bn(k, conv2d_bn(k, x, 192, 1, 1), 320, 3, 3, strides=2, padding="valid")
    b7 = conv2d_bn(k, x, 192, 1, 1)
    b7 = conv2d_bn(k, b7, 192, 1, 7)
    b7 = conv2d_bn(k, b7, 192, 7, 1)
    b7 = conv2d_bn(k, b7, 192, 3, 3, strides=2, padding="valid")
    bp = k.max_pool(x, 3, 2)
    x = k.concat([b3, b7, bp], name="mixed8")
    if last == "mixed8":
        return x
    for i in range(2):
        b1 = conv2d_bn(k, x, 320, 1, 1)
        b3 = conv2d_bn(k, x, 384, 1, 1)
        b3 = k.concat([conv2d_bn(k, b3, 384, 1, 3), conv2d_bn(k, b3, 384, 3, 1)], name=f"mixed9_{i}")
        bd = conv2d_bn(k, conv2d_bn(k, x, 448, 1, 1), 384, 3, 3)
        bd = k.concat([conv2d_bn(k, bd, 384, 1, 3), conv2d_bn(k, bd, 384, 3, 1)])
        bp = conv2d_bn(k, k.avg_pool(x, 3, 1, padding="same"), 192, 1, 1)
        x = k.concat([b1, b3, bd, bp], name=f"mixed{9 + i}")
        if last == f"mixed{9 + i}":
            return x
    if include_top:
        x = k.gap(x, name="avg_pool")
        x = k.dense(x, classes, activation=activation, name="predictions")
    return x


def keras_case(out_dir, name, seed, shape, build, batch=4, calibration=0, fp32_check=False):
    """Writes NAME.h5 and NAME_io.safetensors: `batch` test images and the network's float64 outputs. With
    `calibration` > 0 the network is first built in FP32 on that many other images, which sets BatchNormalization's
    moving statistics (a trained model's), then run again in float64, with the same weights, on the test images."""
    k = Keras(seed)
    x = k.rng.standard_normal((batch,) + shape).astype(np.float32)  # NHWC, as Keras takes it
    nchw = lambda a, dtype: torch.from_numpy(a).to(dtype).permute(0, 3, 1, 2)
    if calibration:
        calib = np.random.default_rng([seed, 1]).standard_normal((calibration,) + shape).astype(np.float32)
        k.dtype, k.calibration = torch.float32, True
        with torch.no_grad():
            build(k, nchw(calib, torch.float32))
        k = Keras(seed, replay=k)
    k.record = fp32_check
    with torch.no_grad():
        y = build(k, nchw(x, torch.float64))
    y = y.permute(0, 2, 3, 1) if y.dim() == 4 else y
    k.write_h5(os.path.join(out_dir, name + ".h5"))
    write_safetensors(os.path.join(out_dir, name + "_io.safetensors"), {"input": x, "output": y.numpy()})
    print(f"{name}: {sum(w.size for _, ws in k.layers for _, w in ws)} weights, input {x.shape}, output "
          f"{tuple(y.shape)}, max |output| {y.abs().max().item():.3g}", flush=True)
    if fp32_check:
        fp32_report(k, build, nchw(x, torch.float32))


def fp32_report(reference, build, x):
    """PyTorch's own FP32 on the same weights and test images, layer by layer: the error carried from the input
    (relative to the layer's max |output|) and the layer's own rounding (its float64 inputs rounded to FP32)."""
    runs = []
    for local in (False, True):
        k = Keras(0, dtype=torch.float32, replay=reference, local=local, record=True)
        with torch.no_grad():
            build(k, x)
        runs.append(k.outputs)
    print(f"  {'layer':<28} {'max |y|':>9} {'carried':>9} {'own':>9}")
    for layer, ref in reference.outputs.items():
        scale = ref.abs().max().item()
        carried, own = ((run[layer].double() - ref).abs().max().item() for run in runs)
        print(f"  {layer:<28} {scale:9.3g} {carried / max(scale, 1e-30):9.2e} {own / max(scale, 1e-30):9.2e}")
    last = list(reference.outputs)[-1]
    diff = (runs[0][last].double() - reference.outputs[last]).abs().max().item()
    print(f"  PyTorch {torch.__version__} FP32: max abs difference {diff:.3g} on outputs up to "
          f"{reference.outputs[last].abs().max().item():.3g}", flush=True)


# ---------------------------------------------------------------- torchvision

LOGIT_STD = 3.0  # a trained ImageNet classifier's logits: spread ~3, largest ~10-15


def rescale_outputs(model, x, modules, target):
    """Data-dependent scaling (as LSUV): each module's weight and bias are multiplied so that its output on this batch has
    standard deviation target(module), in one forward pass (the layers are linear in (weight, bias), so the rescaled
    output is the hook's return value). Without it torchvision's default initializations give AlexNet/VGG activations
    that shrink layer after layer and logits near 0, which would make an absolute bound meaningless."""
    def hook(module, _, output):
        factor = target(module) / output.std().item()
        module.weight.mul_(factor)
        if module.bias is not None:
            module.bias.mul_(factor)
        return output * factor

    handles = [m.register_forward_hook(hook) for m in modules]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()


def torchvision_case(out_dir, name, seed, size, batch=2, aux=(), rescale=None, **kwargs):
    """torchvision's own model with seeded random weights; BN running statistics from the fixture batch, perturbed.
    aux: auxiliary heads, kept in the state dict but left out of the statistics pass (they only run in training, and
    Inception v3's needs inputs of 299x299). rescale: None, "classifier" (the last Linear, for logits of spread
    LOGIT_STD) or "all" (every Conv2d/Linear to unit spread, the classifier to LOGIT_STD; for models without BN)."""
    import torchvision
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(**kwargs)
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(batch, 3, h, w)
    # Running statistics from this batch (momentum 1), then perturbed, so activations stay O(1) as in a trained model.
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            m.momentum = 1.0
            m.weight.uniform_(0.8, 1.2)
            m.bias.normal_(0, 0.1)
        if norms:
            heads = {n: getattr(model, n) for n in aux}
            for n in aux:
                setattr(model, n, None)
            model.train()(x)
            for n, m in heads.items():
                setattr(model, n, m)
        for m in norms:
            m.running_mean.add_(torch.randn_like(m.running_mean) * 0.1 * m.running_var.sqrt())
            m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25)).clamp_(min=1e-2)
    model.eval()
    if rescale is not None:
        layers = [m for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
                  and not any(n.startswith(a + ".") for a in aux)]
        classifier = layers[-1]
        rescale_outputs(model, x, layers if rescale == "all" else [classifier],
                        lambda m: LOGIT_STD if m is classifier else 1.0)
    state = {k: v.numpy() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    write_safetensors(os.path.join(out_dir, name + "_tv.safetensors"), state)
    with torch.no_grad():
        y = model.double()(x.double())
    write_safetensors(os.path.join(out_dir, name + "_tv_io.safetensors"),
                      {"input": x.permute(0, 2, 3, 1).numpy(), "output": y.float().numpy()})
    print(f"{name} (torchvision): {len(state)} tensors, input {h}x{w}, output {tuple(y.shape)}, "
          f"max |logit| {y.abs().max().item():.2f}")


class TorchLeNet5(torch.nn.Module):
    """Seed 001's LeNet-5 written as a PyTorch user writes it: conv 6@5x5 'same' + ReLU, max 2, conv 16@5x5 + ReLU,
    max 2, flatten (C, H, W), 120 ReLU, 84 ReLU, 10 logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(16 * 5 * 5, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def torch_lenet5_case(out_dir, seed=5, batch=4):
    torch.manual_seed(seed)
    model = TorchLeNet5().eval()
    x = torch.rand(batch, 1, 28, 28)
    rescale_outputs(model, x, [model.conv1, model.conv2, model.fc1, model.fc2, model.fc3],
                    lambda m: LOGIT_STD if m is model.fc3 else 1.0)
    with torch.no_grad():
        y = model.double()(x.double())
    write_safetensors(os.path.join(out_dir, "lenet5_torch.safetensors"), {k: v.float().numpy() for k, v in model.state_dict().items()})
    write_safetensors(os.path.join(out_dir, "lenet5_torch_io.safetensors"),
                      {"input": x.permute(0, 2, 3, 1).numpy(), "output": y.float().numpy()})
    print(f"lenet5 (PyTorch module): output {tuple(y.shape)}, max |logit| {y.abs().max().item():.2f}")


def main():
    args = sys.argv[1:]
    if args[:1] == ["--full"]:
        out = args[1]
        os.makedirs(out, exist_ok=True)
        check = "--fp32-check" in args
        # Logits (classifier_activation=None): 1000 softmax probabilities near 0.001 would hide differences. Four
        # calibration images give 196-256 positions per channel at the last stage; more cost FP32 time on Debian's
        # PyTorch (reference BLAS), as the two float64 test images do.
        keras_case(out, "vgg16", 16, (32, 32, 3), lambda k, x: vgg16(k, x, activation=None), batch=2, fp32_check=check)
        keras_case(out, "googlenet", 22, (224, 224, 3), lambda k, x: googlenet(k, x, activation=None), batch=2,
                   fp32_check=check)
        keras_case(out, "resnet50", 50, (224, 224, 3), lambda k, x: resnet50(k, x, activation=None), batch=2,
                   calibration=4, fp32_check=check)
        keras_case(out, "inception_v3", 3, (299, 299, 3), lambda k, x: inception_v3(k, x, activation=None), batch=2,
                   calibration=4, fp32_check=check)
        return
    if args[:1] == ["--torchvision"]:
        out = args[1]
        os.makedirs(out, exist_ok=True)
        torchvision_case(out, "resnet50", 150, 224, batch=1)  # native size: 16 blocks of FP32 rounding stay within 1e-4 abs
        # Sizes where AlexNet's / VGG's adaptive pooling is not the identity (7x6 -> 6x6, 4x3 -> 7x7), where GoogLeNet's
        # ceil-mode poolings pad (and not everywhere), and where Inception v3's last modules still see 3x3 maps.
        torchvision_case(out, "alexnet", 151, (255, 223), rescale="all")
        torchvision_case(out, "vgg16", 152, (128, 96), rescale="all", init_weights=True)
        torchvision_case(out, "googlenet", 153, (83, 79), aux=("aux1", "aux2"), rescale="classifier",
                         aux_logits=True, transform_input=False, init_weights=True)
        torchvision_case(out, "inception_v3", 154, 139, aux=("AuxLogits",), rescale="classifier",
                         aux_logits=True, transform_input=False, init_weights=True)
        torch_lenet5_case(out)
        return
    os.makedirs(HERE, exist_ok=True)
    keras_case(HERE, "lenet5", 1, (28, 28, 1), lenet5)
    keras_case(HERE, "googlenet_3a", 2, (32, 32, 3), lambda k, x: googlenet(k, x, last="inception3a"))
    keras_case(HERE, "resnet50_conv2", 3, (32, 32, 3), lambda k, x: resnet50(k, x, stages=1, include_top=False),
               calibration=8)
    keras_case(HERE, "inception_v3_mixed0", 4, (75, 75, 3), lambda k, x: inception_v3(k, x, last="mixed0"), batch=2,
               calibration=8)


if __name__ == "__main__":
    main()
