#!/usr/bin/env bash
# Sourced by scripts/onnx-tests.sh and scripts/keras-roundtrip.sh: makes the test-only
# venv (.venv-onnx: onnx, onnxruntime, numpy), builds kiln and starts it on loopback
# with a scratch data directory. Sets $port, $pid and $data; the server is stopped and
# the directory removed when the sourcing script exits.
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

# Fails the sourcing script's run (status 1) when the server died during the tests.
check_server_alive() {
    kill -0 $pid 2>/dev/null || { echo "the server died; its log:"; tail -20 "$data/server.log"; return 1; }
}
