#!/usr/bin/env bash
# Sourced by the scripts that drive a live Kiln (compat-tests, onnx-tests,
# keras-roundtrip, bench/protocols): builds kiln with the flags of scripts/test.sh (so
# after it nothing is rebuilt), starts `kiln serve` on a free loopback port with a
# scratch data directory, and waits for /healthz. Sets $port, $pid, $data (scratch
# space; the server's data directory is $server_data) and exports KILN_URL; the server
# is stopped and the directory removed when the sourcing script exits.
swift build -c release -Xswiftc -enable-testing --product kiln >/dev/null
data=$(mktemp -d)
server_data="$data/server"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.build/release/kiln serve --host 127.0.0.1 --port "$port" --data-dir "$server_data" 2>"$data/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -fs "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
export KILN_URL="http://127.0.0.1:$port"

# Fails the sourcing script's run (status 1) when the server died during its tests.
check_server_alive() {
    kill -0 $pid 2>/dev/null || { echo "the server died; its log:"; tail -20 "$data/server.log"; return 1; }
}
