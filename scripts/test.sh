#!/usr/bin/env bash
# Runs the whole test suite, built optimised (numeric loops are slow in debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing "$@"
# ONNX export against ONNX Runtime (a test-only venv); only for the whole suite.
if [ $# -eq 0 ]; then scripts/onnx-tests.sh; fi
