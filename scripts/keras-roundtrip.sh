#!/usr/bin/env bash
# Keras model JSON in, ONNX out: the W1 trunk, the W8-like MLP, an MLP, Keras's MNIST
# convnet and an LSTM (Tests/KilnGraphTests/Fixtures/keras) are posted as jobs on real
# MNIST digits uploaded as uint8 arrays, trained, exported to ONNX, and ONNX Runtime's
# outputs compared with /predict's (within 1e-5). Needs only onnx and onnxruntime.
# Usage: scripts/keras-roundtrip.sh [fixture ...]   (the venv of scripts/onnx-tests.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/onnx-server.sh
status=0
timeout 300 .venv-onnx/bin/python scripts/keras_roundtrip.py "http://127.0.0.1:$port" "$@" || status=$?
check_server_alive || status=1
exit $status
