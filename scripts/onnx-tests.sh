#!/usr/bin/env bash
# Trains a model per layer type and W1–W10's models on a Kiln started here (loopback, a
# scratch data directory), exports each to ONNX, checks it with onnx.checker and
# compares ONNX Runtime's outputs with /predict's (within 1e-5).
# Usage: scripts/onnx-tests.sh [case-name ...]   (a test-only venv in .venv-onnx)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-onnx/bin/python ] || ! .venv-onnx/bin/python -c 'import onnx, onnxruntime, numpy' 2>/dev/null; then
    python3 -m venv .venv-onnx
    .venv-onnx/bin/pip install --quiet onnx onnxruntime numpy
fi
# The same flags as scripts/test.sh, so after it nothing is rebuilt.
swift build -c release -Xswiftc -enable-testing --product kiln >/dev/null
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.build/release/kiln serve --host 127.0.0.1 --port "$port" --data-dir "$data" 2>"$data/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -fs "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
status=0
timeout 1800 .venv-onnx/bin/python scripts/onnx_tests.py "http://127.0.0.1:$port" "$@" || status=$?
# kiln export reads the same data directory and writes the bytes the server sends.
if [ $# -eq 0 ] || [[ " $* " == *" dense "* ]]; then
    .build/release/kiln export "$data" --model dense --output "$data/dense.onnx"
    curl -fs "127.0.0.1:$port/models/dense/export?format=onnx" -o "$data/dense-http.onnx"
    if cmp -s "$data/dense.onnx" "$data/dense-http.onnx" && .venv-onnx/bin/python -c 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)' "$data/dense.onnx"; then
        echo "PASS kiln export: the same bytes as GET /models/dense/export, onnx.checker passes"
    else
        echo "FAIL kiln export"; status=1
    fi
fi
kill -0 $pid 2>/dev/null || { echo "the server died; its log:"; tail -20 "$data/server.log"; status=1; }
exit $status
