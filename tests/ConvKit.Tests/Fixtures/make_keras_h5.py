#!/usr/bin/python3
"""Keras legacy HDF5 weight fixtures for ConvKit.Tests.Saving (h5py + numpy, no Keras needed).

Reproduces the layout keras.applications / Keras 2 `save_weights('x.h5')` produce:
  root attrs  layer_names = fixed-length byte strings (numpy 'S'), backend, keras_version
  /<layer>    attr weight_names = fixed-length byte strings (an empty float64 array for layers without weights,
              as np.asarray([]) gives), datasets at the nested paths named there, e.g. /conv1/conv1/kernel:0
Attributes larger than HDF5's 64 KiB header limit are split by Keras into name0, name1, ...; the split file forces
that split for layer_names and for one weight_names list.
keras_model.h5 is the `model.save('x.h5')` layout: the same structure under a /model_weights group.
keras_expected.json lists every layer, weight, shape and value (float32 values as exact doubles).

Run with Debian's interpreter: /usr/bin/python3 make_keras_h5.py
"""
import json
import os

import h5py
import numpy as np

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Saving")
rng = np.random.default_rng(1234)


def w(*shape):
    return rng.standard_normal(shape).astype(np.float32)


LAYERS = [
    ("block1_conv1", [("kernel:0", w(3, 3, 3, 4)), ("bias:0", w(4))]),  # HWIO
    ("block1_pool", []),
    ("bn", [("gamma:0", w(4)), ("beta:0", w(4)), ("moving_mean:0", w(4)),
            ("moving_variance:0", np.abs(w(4)) + 0.5)]),
    ("block2_conv1", [("kernel:0", w(3, 3, 4, 2)), ("bias:0", w(2))]),
    ("flatten", []),
    ("predictions", [("kernel:0", w(8, 3)), ("bias:0", w(3))]),  # (in, out)
]


def names(xs):
    return np.array([x.encode("utf-8") for x in xs]) if xs else np.asarray([])


def fill(group, split=False):
    layer_names = [n for n, _ in LAYERS]
    if split:
        group.attrs["layer_names0"] = names(layer_names[:4])
        group.attrs["layer_names1"] = names(layer_names[4:])
    else:
        group.attrs["layer_names"] = names(layer_names)
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = b"2.13.1"
    for layer, weights in LAYERS:
        g = group.create_group(layer)
        full = [f"{layer}/{n}" for n, _ in weights]
        if split and layer == "bn":
            g.attrs["weight_names0"] = names(full[:1])
            g.attrs["weight_names1"] = names(full[1:3])
            g.attrs["weight_names2"] = names(full[3:])
        else:
            g.attrs["weight_names"] = names(full)
        for name, value in zip(full, (v for _, v in weights)):
            g.create_dataset(name, data=value)


def main():
    os.makedirs(HERE, exist_ok=True)
    with h5py.File(os.path.join(HERE, "keras_weights.h5"), "w") as f:
        fill(f)
    with h5py.File(os.path.join(HERE, "keras_split.h5"), "w") as f:
        fill(f, split=True)
    with h5py.File(os.path.join(HERE, "keras_model.h5"), "w") as f:
        f.attrs["model_config"] = b'{"class_name": "Sequential"}'
        fill(f.create_group("model_weights"))
        f.create_group("optimizer_weights")
    expected = [{"name": layer,
                 "weights": [{"name": f"{layer}/{n}", "shape": list(v.shape),
                              "data": [float(x) for x in v.reshape(-1)]} for n, v in weights]}
                for layer, weights in LAYERS]
    with open(os.path.join(HERE, "keras_expected.json"), "w") as f:
        json.dump(expected, f)
    print("wrote keras_weights.h5, keras_split.h5, keras_model.h5, keras_expected.json")


if __name__ == "__main__":
    main()
