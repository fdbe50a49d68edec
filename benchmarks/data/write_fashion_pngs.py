#!/usr/bin/env python3
"""Writes Fashion-MNIST (or any IDX image/label pair) as PNG files in class folders, the layout of
`convkit train MODEL --data DIR`: OUT/train/<class>/<index>.png and OUT/test/<class>/<index>.png.

usage: write_fashion_pngs.py OUT [--source /usr/share/datasets/fashion-mnist] [--limit N]
Only the standard library (gzip, struct, zlib) is used, so it runs wherever python3 does.
"""
import argparse, gzip, os, struct, zlib

CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return shape, data[4 + 4 * dims:]


def png_gray(width, height, pixels):
    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def write(split, prefix, source, out, limit):
    shape, images = read_idx(os.path.join(source, f"{prefix}-images-idx3-ubyte.gz"))
    _, labels = read_idx(os.path.join(source, f"{prefix}-labels-idx1-ubyte.gz"))
    n, h, w = shape
    if limit:
        n = min(n, limit)
    for c in CLASSES:
        os.makedirs(os.path.join(out, split, c), exist_ok=True)
    for i in range(n):
        path = os.path.join(out, split, CLASSES[labels[i]], f"{i:05d}.png")
        with open(path, "wb") as f:
            f.write(png_gray(w, h, images[i * h * w:(i + 1) * h * w]))
    return n


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=0, help="first N images of each split (0: all)")
    a = ap.parse_args()
    print("train:", write("train", "train", a.source, a.out, a.limit), "test:", write("test", "t10k", a.source, a.out, a.limit))
