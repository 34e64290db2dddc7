#!/usr/bin/env python3
"""Writes an IDX dataset (Fashion-MNIST, MNIST) out as image folders, the
layout `enas --dataset folder` reads: OUT/train/<class>/<index>.png and
OUT/test/<class>/<index>.png, grey PNGs.

    scripts/idx-to-folder.py [IDX_DIR] OUT_DIR [--names fashion|digits]

IDX_DIR defaults to /usr/share/datasets/fashion-mnist (Debian's
dataset-fashion-mnist). Class folders are named "<label>_<name>", so their
order is the labels' order; files are named by their index in the IDX file,
so within a class they keep its order. Needs nothing beyond Python's
standard library (the PNGs are written with zlib).
"""
import argparse
import gzip
import os
import struct
import sys
import zlib

FASHION = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]


def read_idx(dir, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(dir, name)
        if os.path.exists(path):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as f:
                return f.read()
    sys.exit(f"{os.path.join(dir, stem)}: no such file (nor .gz)")


def images(data):
    magic, n, h, w = struct.unpack(">IIII", data[:16])
    if magic != 0x803:
        sys.exit(f"wrong magic {magic:#x} in an image file")
    return n, h, w, data[16:]


def labels(data):
    magic, n = struct.unpack(">II", data[:8])
    if magic != 0x801:
        sys.exit(f"wrong magic {magic:#x} in a label file")
    return data[8:8 + n]


def png(h, w, pixels):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")


def main():
    parser = argparse.ArgumentParser(description="IDX files to image folders (enas --dataset folder)")
    parser.add_argument("idx_dir", nargs="?", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("out_dir")
    parser.add_argument("--names", choices=["fashion", "digits"], default="fashion", help="class names: Fashion-MNIST's or the digits")
    a = parser.parse_args()
    class_names = FASHION if a.names == "fashion" else [str(d) for d in range(10)]
    for split, prefix in (("train", "train"), ("test", "t10k")):
        n, h, w, pixels = images(read_idx(a.idx_dir, f"{prefix}-images-idx3-ubyte"))
        ys = labels(read_idx(a.idx_dir, f"{prefix}-labels-idx1-ubyte"))
        if len(ys) != n:
            sys.exit(f"{prefix}: {n} images but {len(ys)} labels")
        width = len(str(n - 1))
        folders = {y: os.path.join(a.out_dir, split, f"{y}_{class_names[y]}") for y in set(ys)}
        for folder in folders.values():
            os.makedirs(folder, exist_ok=True)
        size = h * w
        for i in range(n):
            with open(os.path.join(folders[ys[i]], f"{i:0{width}d}.png"), "wb") as f:
                f.write(png(h, w, pixels[i * size:(i + 1) * size]))
        print(f"{split}: {n} images in {os.path.join(a.out_dir, split)}")


if __name__ == "__main__":
    main()
