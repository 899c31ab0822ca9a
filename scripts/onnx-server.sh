#!/usr/bin/env bash
# Sourced by scripts/onnx-tests.sh and scripts/keras-roundtrip.sh: makes the test-only
# venv (.venv-onnx: onnx, onnxruntime, numpy), then starts a server (kiln-server.sh).
if [ ! -x .venv-onnx/bin/python ] || ! .venv-onnx/bin/python -c 'import onnx, onnxruntime, numpy' 2>/dev/null; then
    python3 -m venv .venv-onnx
    .venv-onnx/bin/pip install --quiet onnx onnxruntime numpy
fi
source scripts/kiln-server.sh
