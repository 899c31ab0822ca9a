#!/usr/bin/env bash
# Starts Kiln on a scratch data directory, trains two small jobs on inline data, and
# renders the dashboard (GET /) in headless Chromium to a PNG for a person to look at.
# Usage: scripts/dashboard-screenshot.sh [out.png]   (needs Debian's chromium package)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dashboard.png}"
command -v chromium >/dev/null || { echo "chromium is not installed (apt-get install chromium)"; exit 1; }
swift build -c release --product kiln >/dev/null
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.build/release/kiln serve --port "$port" --data-dir "$data" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 50); do curl -fs "localhost:$port/healthz" >/dev/null && break; sleep 0.1; done
spec() {
    python3 - "$1" "$2" <<'PY'
import json, math, sys
name, epochs = sys.argv[1], int(sys.argv[2])
xs = [[i % 16 / 16, i // 16 / 16] for i in range(256)]
ys = [int(math.sin(6 * a) > b - 0.5) for a, b in xs]
print(json.dumps({"name": name,
    "model": {"inputs": {"x": [2]}, "layers": [{"type": "dense", "units": 32, "activation": "tanh"},
              {"type": "dense", "units": 2, "activation": "softmax", "name": "p"}]},
    "data": {"fields": {"x": xs, "y": ys}},
    "train": {"epochs": epochs, "batch_size": 16, "optimizer": {"type": "adam", "learning_rate": 0.02},
              "losses": [{"node": "p", "type": "categorical_crossentropy", "target": "y"}],
              "metrics": ["accuracy"], "validation": {"fraction": 0.2}}}))
PY
}
spec waves 40 | curl -fs "localhost:$port/jobs" -H 'Content-Type: application/json' -d @- >/dev/null
spec short 8 | curl -fs "localhost:$port/jobs" -H 'Content-Type: application/json' -d @- >/dev/null
# A job that fails while running (its learning rate makes the loss overflow).
curl -fs "localhost:$port/jobs" -H 'Content-Type: application/json' -d '{"name": "diverges", "model": {"inputs": {"x": [2]}, "layers": [{"type": "dense", "units": 1, "name": "y"}]}, "data": {"fields": {"x": [[1e15, 2e15], [3e15, 4e15]], "y": [[1], [0]]}}, "train": {"epochs": 50, "optimizer": {"type": "sgd", "learning_rate": 10}, "losses": [{"node": "y", "type": "mse", "target": "y"}]}}' >/dev/null
for _ in $(seq 100); do
    curl -fs "localhost:$port/jobs" | grep -q '"status":"queued"\|"status":"running"' || break
    sleep 0.2
done
chromium --headless --no-sandbox --disable-gpu --window-size=1200,700 --screenshot="$out" "http://127.0.0.1:$port/" 2>/dev/null
echo "wrote $out"
