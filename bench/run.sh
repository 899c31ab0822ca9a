#!/usr/bin/env bash
# Runs Kiln's, PyTorch's and Keras-on-JAX's benchmarks side by side and prints the
# ratios per figure. Usage: bench/run.sh [kernels] [mlp] [conv] [predict]   (default: all)
# Environment: KILN_BENCH_MLP_ROWS, KILN_BENCH_CONV_ROWS (subsets, scaled to 60000),
# KILN_BENCH_SKIP_TORCH=1, KILN_BENCH_SKIP_KERAS=1, KILN_KERNELS (auto|openblas|onednn).
set -uo pipefail
cd "$(dirname "$0")/.."
parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(kernels mlp conv predict)
out=$(mktemp); trap 'rm -f "$out"' EXIT

swift build -c release >/dev/null 2>&1 || { swift build -c release; exit 1; }
bench=.build/release/kiln-bench

# The peers live in bench/.venv only (PyTorch CPU, Keras 3 on JAX); never a build or
# test dependency of Kiln.
py=bench/.venv/bin/python
torch_ok=0 keras_ok=0
if [ ! -x "$py" ]; then python3 -m venv bench/.venv || true; fi
if [ "${KILN_BENCH_SKIP_TORCH:-0}" != 1 ]; then
    "$py" -c 'import torch' 2>/dev/null || bench/.venv/bin/pip install -q torch==2.13.0+cpu numpy \
        || echo '{"note": "pytorch skipped: pip install torch==2.13.0+cpu failed"}'
    "$py" -c 'import torch' 2>/dev/null && torch_ok=1
fi
if [ "${KILN_BENCH_SKIP_KERAS:-0}" != 1 ]; then
    KERAS_BACKEND=jax "$py" -c 'import jax, keras' 2>/dev/null || bench/.venv/bin/pip install -q jax keras numpy \
        || echo '{"note": "keras-jax skipped: pip install jax keras failed"}'
    KERAS_BACKEND=jax "$py" -c 'import jax, keras' 2>/dev/null && keras_ok=1
fi

for part in "${parts[@]}"; do
    case $part in
    kernels|mlp|conv)
        $bench "$part" | tee -a "$out"
        [ $torch_ok = 1 ] && "$py" -W ignore bench/torch_bench.py "$part" 2>/dev/null | tee -a "$out"
        [ $keras_ok = 1 ] && KERAS_BACKEND=jax "$py" -W ignore bench/keras_bench.py "$part" 2>/dev/null | tee -a "$out"
        ;;
    predict)
        bench/predict.sh "$bench" | tee -a "$out"
        ;;
    esac
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {impl: {r["figure"]: r for r in rows if r.get("impl") == impl} for impl in ("kiln", "pytorch", "keras-jax")}
kiln, torch, keras = by["kiln"], by["pytorch"], by["keras-jax"]

# The machine's real sgemm peak: the fastest correct 1024³ sgemm any of them ran.
peaks = [(r["value"], f'{r["impl"]}: {r.get("kernel", "own sgemm")}') for r in rows
         if r.get("figure") == "sgemm_peak_1024" and r.get("correct", True)]
if peaks:
    value, which = max(peaks)
    print(f"\nreal sgemm peak (fastest correct 1024³ sgemm in this run): {value:.1f} GFLOP/s ({which})")
    for name in ("dense_784x512_b128_fwd_bwd", "conv_32to64_3x3_b128_fwd_bwd"):
        if name in kiln and "gflops" in kiln[name]:
            print(f"  kiln {name}: {kiln[name]['gflops'] / value * 100:.1f}% of the real peak")

def ratio(k, t):
    # Efficiency figures are shares of each framework's own peak; compare their times.
    if not t:
        return ""
    if "ms" in k and "ms" in t:
        return f"{k['ms'] / t['ms']:.2f} (time)"
    if "gbs" in k and "gbs" in t:
        return f"{t['gbs'] / k['gbs']:.2f} (time)"
    return f"{k['value'] / t['value']:.2f}" if t["value"] else ""

print()
print(f"{'figure':38} {'kiln':>10} {'pytorch':>10} {'keras-jax':>10}  {'kiln/pytorch':>14} {'kiln/keras-jax':>14}")
for name, k in kiln.items():
    t, j = torch.get(name), keras.get(name)
    cell = lambda r: f"{r['value']:.4g}" if r else "-"
    print(f"{name:38} {k['value']:>10.4g} {cell(t):>10} {cell(j):>10}  {ratio(k, t):>14} {ratio(k, j):>14}   [{k['unit']}]")
PY
