#!/usr/bin/env python3
"""Plots 2-D codes per class as an SVG scatter plot (standard library only).

    scripts/plot-codes.py codes.json codes.svg

codes.json is a list of {"label": int, "code": [x, y]} rows, e.g. built from
POST /predict with "outputs": ["code"] and the labels of the images sent.
"""
import json, sys

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot-codes.py codes.json out.svg")
    rows = json.load(open(sys.argv[1]))
    xs = [float(r["code"][0]) for r in rows]
    ys = [float(r["code"][1]) for r in rows]
    if not rows:
        sys.exit("no codes")
    size, pad = 480, 40
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    sx = (size - 2 * pad) / ((x1 - x0) or 1)
    sy = (size - 2 * pad) / ((y1 - y0) or 1)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">' % (size + 80, size, size + 80, size),
           '<rect width="100%" height="100%" fill="white"/>',
           '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>' % (pad, pad, size - 2 * pad, size - 2 * pad)]
    for r, x, y in zip(rows, xs, ys):
        label = int(r["label"])
        cx = pad + (x - x0) * sx
        cy = size - pad - (y - y0) * sy
        out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s" fill-opacity="0.7"><title>%d</title></circle>' % (cx, cy, COLOURS[label % 10], label))
    for k in sorted({int(r["label"]) for r in rows}):
        y = pad + 18 * k
        out.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/>' % (size + 10, y, COLOURS[k % 10]))
        out.append('<text x="%d" y="%d" font-family="sans-serif" font-size="12">%d</text>' % (size + 26, y + 10, k))
    out.append('<text x="%d" y="%d" font-family="sans-serif" font-size="11">x: %.2f … %.2f, y: %.2f … %.2f</text>' % (pad, size - 12, x0, x1, y0, y1))
    out.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
