#!/usr/bin/python3
"""Safetensors interop fixtures for ConvKit.Tests.Saving.

Writes Saving/python_reference.safetensors by hand from the format spec (this machine has no `safetensors`
package): u64 LE header length, JSON header, raw little-endian data. The data is laid out in reverse name order
and the header is not sorted, to make sure ConvKit does not depend on its own writer's conventions.

With --check it instead parses Saving/convkit_written.safetensors (committed, produced by ConvKit's writer; the
C# test SafeTensorsInteropTests checks it is byte-identical to the current writer's output) with a strict reader
written here with numpy only, and compares every value to the same table.

Run with Debian's interpreter: /usr/bin/python3 make_safetensors.py [--check]
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def bf16_bits(values):
    # bfloat16 = the high 16 bits of float32; the chosen values are exact in bf16.
    return (np.array(values, dtype="<f4").view("<u4") >> 16).astype("<u2")


# name -> (dtype, shape, numpy array of the stored bytes' element type); shared with the C# tests.
TABLE = {
    "conv/kernel": ("F32", [2, 3], np.array([-1.5, 0, 0.25, 1, 2.5, -3], dtype="<f4")),
    "half": ("F16", [4], np.array([0.5, -2, 65504, 2.0 ** -14], dtype="<f2")),
    "bhalf": ("BF16", [3], bf16_bits([1, -0.5, 256])),
    "double": ("F64", [2, 2], np.array([0.1, -2, 1e300, 5e-324], dtype="<f8")),
    "steps": ("I64", [3], np.array([0, -1, 9007199254740993], dtype="<i8")),
    "ints": ("I32", [2, 2], np.array([1, -2, 2147483647, -2147483648], dtype="<i4")),
    "bytes": ("U8", [5], np.array([0, 1, 127, 128, 255], dtype="u1")),
    "mask": ("BOOL", [4], np.array([1, 0, 1, 1], dtype="u1")),
    "empty": ("F32", [0, 3], np.zeros((0,), dtype="<f4")),
}
METADATA = {"format": "pt", "note": "\u00fcn\u00efcode"}
SIZES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "U8": 1, "BOOL": 1}
NP = {"F64": "<f8", "I64": "<i8", "F32": "<f4", "I32": "<i4", "F16": "<f2", "BF16": "<u2", "U8": "u1", "BOOL": "u1"}


def write_reference(path):
    header, chunks, offset = {"__metadata__": METADATA}, [], 0
    for name in sorted(TABLE, reverse=True):
        dtype, shape, arr = TABLE[name]
        raw = arr.tobytes()
        header[name] = {"data_offsets": [offset, offset + len(raw)], "shape": shape, "dtype": dtype}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def check(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack_from("<Q", blob, 0)
    assert n % 8 == 0, "header padded to 8 bytes"
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert meta.get("note") == METADATA["note"], meta
    assert set(header) == set(TABLE), sorted(header)
    spans = sorted((tuple(e["data_offsets"]), k) for k, e in header.items())
    pos = 0
    for (b, e), name in spans:
        assert b == pos, f"{name}: hole or overlap at {b}"
        pos = e
    assert pos == len(data), "no trailing bytes"
    names_in_layout = [k for _, k in spans if header[k]["data_offsets"][0] != header[k]["data_offsets"][1]]
    assert names_in_layout == sorted(names_in_layout), "ConvKit lays data out in sorted name order"
    for name, (dtype, shape, arr) in TABLE.items():
        e = header[name]
        assert e["dtype"] == dtype and e["shape"] == shape, (name, e)
        b, end = e["data_offsets"]
        assert end - b == int(np.prod(shape)) * SIZES[dtype], name
        got = np.frombuffer(data[b:end], dtype=NP[dtype])
        assert got.tobytes() == arr.tobytes(), (name, got, arr)
    print(f"OK: {path} parsed with numpy; {len(TABLE)} tensors and metadata match")


if __name__ == "__main__":
    if "--check" in sys.argv:
        check(os.path.join(HERE, "Saving", "convkit_written.safetensors"))
    else:
        write_reference(os.path.join(HERE, "Saving", "python_reference.safetensors"))
        print("wrote Saving/python_reference.safetensors")
