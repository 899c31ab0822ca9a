#!/usr/bin/env bash
# Screenshots of the dashboard's three pages — the jobs list (/), one job's page
# (/jobs/{id}) and a comparison (/compare?jobs=…) — at 1280×800 (a laptop) and 390×844
# (a phone), in headless Chromium, for a person to look at. Each page is also taken
# whole (a tall window of the same width) to show what lies below the fold.
#
# Usage: scripts/dashboard-screenshot.sh [--url URL] [--job ID] [--compare ID,ID,…] [OUT_DIR]
#   --url       a running Kiln (e.g. one that has trained the workloads); without it the
#               script starts its own on a scratch data directory and trains a few small
#               jobs on inline data (one still running when the pictures are taken)
#   --job       the job to show (default: the newest succeeded job with most epochs)
#   --compare   the runs to compare (default: up to four succeeded runs of one name,
#               else the newest four succeeded jobs)
#   OUT_DIR     where the PNGs go (default: dashboard-screenshots); the script prints it
# Needs Debian's chromium; it is installed with apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

url="" job="" compare="" out="dashboard-screenshots"
while [ $# -gt 0 ]; do
    case "$1" in
        --url) url="$2"; shift 2 ;;
        --job) job="$2"; shift 2 ;;
        --compare) compare="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) out="$1"; shift ;;
    esac
done

if ! command -v chromium >/dev/null; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi

cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c"; done' EXIT

if [ -z "$url" ]; then
    # The flags of scripts/test.sh, so that the tests and this script share one build.
    swift build -c release -Xswiftc -enable-testing --product kiln >/dev/null
    data=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    .build/release/kiln serve --host 127.0.0.1 --port "$port" --data-dir "$data" 2>/dev/null &
    pid=$!
    cleanup+=("kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf '$data'")
    url="http://127.0.0.1:$port"
    for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.1; done
    spec() {
        python3 - "$@" <<'PY'
import json, math, sys
name, epochs, lr, units = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
xs = [[i % 16 / 16, i // 16 / 16] for i in range(256)]
ys = [int(math.sin(6 * a) > b - 0.5) for a, b in xs]
print(json.dumps({"name": name,
    "model": {"inputs": {"x": [2]}, "layers": [{"type": "dense", "units": units, "activation": "tanh"},
              {"type": "dense", "units": 2, "activation": "softmax", "name": "p"}]},
    "data": {"fields": {"x": xs, "y": ys}},
    "train": {"epochs": epochs, "batch_size": 16, "seed": 1, "optimizer": {"type": "adam", "learning_rate": lr},
              "losses": [{"node": "p", "type": "categorical_crossentropy", "target": "y"}],
              "metrics": ["accuracy"], "validation": {"fraction": 0.2}}}))
PY
    }
    post() { curl -fs "$url/jobs" -H 'Content-Type: application/json' -d @- >/dev/null; }
    spec waves 40 0.02 32 | post
    spec waves 40 0.005 32 | post
    spec waves 40 0.02 8 | post
    spec one-epoch 1 0.02 32 | post
    # A job that fails while running (its learning rate makes the loss overflow).
    echo '{"name": "diverges", "model": {"inputs": {"x": [2]}, "layers": [{"type": "dense", "units": 1, "name": "y"}]}, "data": {"fields": {"x": [[1e15, 2e15], [3e15, 4e15]], "y": [[1], [0]]}}, "train": {"epochs": 50, "optimizer": {"type": "sgd", "learning_rate": 10}, "losses": [{"node": "y", "type": "mse", "target": "y"}]}}' | post
    for _ in $(seq 600); do
        curl -fs "$url/jobs" | grep -q '"status":"queued"\|"status":"running"' || break
        sleep 0.2
    done
    # One more, still running while the pictures are taken.
    spec long-run 100000 0.01 32 | post
    sleep 2
fi

jobs_json=$(curl -fs "$url/jobs")
if [ -z "$job" ]; then
    job=$(python3 -c '
import json, sys
jobs = [j for j in json.load(sys.stdin)["jobs"] if j["status"] == "succeeded"]
jobs.sort(key=lambda j: (j["progress"]["epoch"], j.get("finished_at", "")), reverse=True)
print(jobs[0]["id"] if jobs else "")' <<<"$jobs_json")
fi
if [ -z "$compare" ]; then
    compare=$(python3 -c '
import json, sys, collections
jobs = [j for j in json.load(sys.stdin)["jobs"] if j["status"] == "succeeded"]
by_name = collections.defaultdict(list)
for j in jobs: by_name[j["name"]].append(j["id"])
runs = max(by_name.values(), key=len, default=[])
if len(runs) < 2: runs = [j["id"] for j in jobs]
print(",".join(runs[:4]))' <<<"$jobs_json")
fi
[ -n "$job" ] || { echo "no succeeded job to show on $url" >&2; exit 1; }

mkdir -p "$out"
shoot() {  # name path width height
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
        --window-size="$3,$4" --screenshot="$out/$1.png" "$url$2" >/dev/null 2>&1
}
for size in 1280x800 390x844; do
    width=${size%x*} height=${size#*x}
    tall=$([ "$width" -lt 800 ] && echo 9000 || echo 3600)
    for page in "jobs|/" "job|/jobs/$job" "compare|/compare?jobs=$compare"; do
        name=${page%%|*} path=${page#*|}
        shoot "$name-$size" "$path" "$width" "$height"
        shoot "$name-$width-full" "$path" "$width" "$tall"
    done
done
echo "job page: /jobs/$job; comparison: /compare?jobs=$compare"
echo "screenshots in $(cd "$out" && pwd):"
ls "$out"
