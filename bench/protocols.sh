#!/usr/bin/env bash
# Prediction latency through each serving protocol (bench/protocols.py): starts
# `kiln serve` on a free loopback port with a scratch data directory, uses the
# client-compatibility venv (scripts/compat-venv.sh). Prints one JSON line per figure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/compat-venv.sh
swift build -c release -Xswiftc -enable-testing --product kiln >/dev/null
py=.venv-compat/bin/python
data=$(mktemp -d)
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.build/release/kiln serve --host 127.0.0.1 --port "$port" --data-dir "$data" 2>"$data/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 50); do curl -fs "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
KILN_URL="http://127.0.0.1:$port" $py bench/protocols.py
