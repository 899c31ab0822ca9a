#!/usr/bin/env bash
# Runs the whole test suite, built optimised (numeric loops are slow in debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing "$@"
# Only for the whole suite: the real client libraries (tritonclient, requests,
# prometheus_client, promtool) and the command line against a live server
# (docs/serving.md), ONNX export against ONNX Runtime (docs/onnx.md) and Keras JSON in,
# ONNX out (docs/keras.md), each in a test-only venv.
if [ $# -eq 0 ]; then
    scripts/compat-tests.sh
    scripts/onnx-tests.sh
    scripts/keras-roundtrip.sh
fi
