#!/usr/bin/env python3
"""Writes the synthetic datasets of workloads W4 and W5 as JSON bodies for POST /datasets.

    scripts/workload-data.py w4 > /tmp/w4.json
    curl -X POST localhost:8080/datasets -H 'Content-Type: application/json' -d @/tmp/w4.json

w4-grid: x is a 30x30x1 matrix of integers 0..75; y[i,j] = 1 when the 3x3 neighbourhood
of cell (i,j) (zero outside the matrix) sums to more than 9 * 37.5, else 0.
w5-helix: t holds 8 sorted parameters in [0, 2*pi); the hidden points are on the helix
(cos t, sin t, t / pi) and d is their 8x8 matrix of pairwise squared distances.
Standard library only; the seed is fixed so the data is the same on every run.
"""
import json, math, random, sys


def grid(rng, n):
    xs, ys = [], []
    for _ in range(n):
        x = [[rng.randint(0, 75) for _ in range(30)] for _ in range(30)]
        y = []
        for i in range(30):
            row = []
            for j in range(30):
                s = sum(x[a][b] for a in range(i - 1, i + 2) for b in range(j - 1, j + 2) if 0 <= a < 30 and 0 <= b < 30)
                row.append([1 if s > 9 * 37.5 else 0])
            y.append(row)
        xs.append([[[v] for v in r] for r in x])
        ys.append(y)
    return {"x": xs, "y": ys}


def helix(rng, n, size=8):
    ts, ds = [], []
    for _ in range(n):
        t = sorted(rng.uniform(0, 2 * math.pi) for _ in range(size))
        p = [(math.cos(v), math.sin(v), v / math.pi) for v in t]
        d = [[sum((a - b) ** 2 for a, b in zip(p[i], p[j])) for j in range(size)] for i in range(size)]
        ts.append(t)
        ds.append(d)
    return {"t": ts, "d": ds}


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "w4"
    rng = random.Random(7)
    if which == "w4":
        body = {"name": "w4-grid", "fields": grid(rng, 512), "test": grid(rng, 128)}
    elif which == "w5":
        body = {"name": "w5-helix", "fields": helix(rng, 2048), "test": helix(rng, 256)}
    else:
        sys.exit("usage: workload-data.py w4|w5")
    json.dump(body, sys.stdout, separators=(",", ":"))


if __name__ == "__main__":
    main()
