#!/usr/bin/env bash
# Runs Kiln's and PyTorch's benchmarks side by side and prints the ratio Kiln/PyTorch
# per figure. Usage: bench/run.sh [kernels] [mlp] [conv] [predict]   (default: all)
# Environment: KILN_BENCH_MLP_ROWS, KILN_BENCH_CONV_ROWS (subsets, scaled to 60000),
# KILN_BENCH_SKIP_TORCH=1.
set -uo pipefail
cd "$(dirname "$0")/.."
parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(kernels mlp conv predict)
out=$(mktemp); trap 'rm -f "$out"' EXIT

swift build -c release >/dev/null 2>&1 || { swift build -c release; exit 1; }
bench=.build/release/kiln-bench

# PyTorch (CPU) in bench/.venv.
py=bench/.venv/bin/python
torch_ok=0
if [ "${KILN_BENCH_SKIP_TORCH:-0}" != 1 ]; then
    if [ ! -x "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then
        python3 -m venv bench/.venv && bench/.venv/bin/pip install -q torch==2.13.0+cpu numpy \
            || echo '{"note": "pytorch skipped: pip install torch==2.13.0+cpu failed"}'
    fi
    "$py" -c 'import torch' 2>/dev/null && torch_ok=1
fi

for part in "${parts[@]}"; do
    case $part in
    kernels|mlp|conv)
        $bench "$part" | tee -a "$out"
        [ $torch_ok = 1 ] && "$py" -W ignore bench/torch_bench.py "$part" 2>/dev/null | tee -a "$out"
        ;;
    predict)
        bench/predict.sh "$bench" | tee -a "$out"
        ;;
    esac
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
kiln = {r["figure"]: r for r in rows if r.get("impl") == "kiln"}
torch = {r["figure"]: r for r in rows if r.get("impl") == "pytorch"}
print()
print(f"{'figure':38} {'kiln':>12} {'pytorch':>12}  kiln/pytorch")
for name, k in kiln.items():
    t = torch.get(name)
    # Efficiency figures are shares of each framework's own peak; compare their times.
    kv, tv = k["value"], t["value"] if t else None
    ratio = ""
    if t and "ms" in k and "ms" in t:
        ratio = f"{k['ms'] / t['ms']:.2f} (time)"
    elif t and "gbs" in k and "gbs" in t:
        ratio = f"{t['gbs'] / k['gbs']:.2f} (time)"
    elif t and tv:
        ratio = f"{kv / tv:.2f}"
    print(f"{name:38} {kv:>12.4g} {(f'{tv:.4g}' if t else '-'):>12}  {ratio}   [{k['unit']}]")
PY
