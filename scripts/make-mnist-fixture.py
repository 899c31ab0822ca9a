#!/usr/bin/env python3
"""Writes the MNIST fixture the tests use: the first N training and M test images of
real MNIST, in MNIST's own gzipped IDX format and file names, so end-to-end tests run
the real download-and-parse path on any clone.

usage: scripts/make-mnist-fixture.py <dir with the four MNIST .gz files> [train] [test]
"""
import gzip, os, struct, sys

src = sys.argv[1]
counts = {"train": int(sys.argv[2]) if len(sys.argv) > 2 else 10000,
          "t10k": int(sys.argv[3]) if len(sys.argv) > 3 else 2000}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "mnist")
os.makedirs(out, exist_ok=True)
for split, n in counts.items():
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        name = f"{split}-{kind}.gz"
        data = gzip.open(os.path.join(src, name)).read()
        magic, count = struct.unpack(">II", data[:8])
        dims = magic & 0xFF
        header = 4 + 4 * dims
        shape = struct.unpack(">" + "I" * dims, data[4:header])
        row = 1
        for d in shape[1:]:
            row *= d
        body = data[header:header + n * row]
        new = data[:4] + struct.pack(">I", n) + data[8:header] + body
        # mtime 0: the same input gives the same bytes.
        with open(os.path.join(out, name), "wb") as f:
            with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=9, filename="") as g:
                g.write(new)
        print(name, n, "rows", os.path.getsize(os.path.join(out, name)), "bytes")
