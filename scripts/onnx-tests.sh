#!/usr/bin/env bash
# Trains a model per layer type and W1–W10's models on a Kiln started here (loopback, a
# scratch data directory), exports each to ONNX, checks it with onnx.checker and
# compares ONNX Runtime's outputs with /predict's (within 1e-5).
# Usage: scripts/onnx-tests.sh [case-name ...]   (a test-only venv in .venv-onnx)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/onnx-server.sh
status=0
timeout 1800 .venv-onnx/bin/python scripts/onnx_tests.py "http://127.0.0.1:$port" "$@" || status=$?
# kiln export reads the same data directory and writes the bytes the server sends.
if [ $# -eq 0 ] || [[ " $* " == *" dense "* ]]; then
    .build/release/kiln export "$server_data" --model dense --output "$data/dense.onnx"
    curl -fs "127.0.0.1:$port/models/dense/export?format=onnx" -o "$data/dense-http.onnx"
    if cmp -s "$data/dense.onnx" "$data/dense-http.onnx" && .venv-onnx/bin/python -c 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)' "$data/dense.onnx"; then
        echo "PASS kiln export: the same bytes as GET /models/dense/export, onnx.checker passes"
    else
        echo "FAIL kiln export"; status=1
    fi
fi
check_server_alive || status=1
exit $status
