#!/usr/bin/env bash
# Availability of the HTTP core (issue 13) under idle, slow, abandoned and heavy
# clients, all on loopback and bounded in count and time. Prints JSON lines.
#
#   bench/http.sh [kiln binary]            default .build/release/kiln
#   KILN_OLD_BIN=/path/to/old/kiln bench/http.sh   adds the /predict rows for that binary
#   KILN_HTTP_BENCH_SLOW_SECONDS=60        length of each slowhttptest run
#   KILN_HTTP_BENCH_IDLE=10000             idle keep-alive connections to hold
#   KILN_HTTP_BENCH_STREAMS=1000           ?follow=1 streams to open and abandon
#   KILN_HTTP_BENCH_PARTS="idle slow streams predict"
#
# Needs wrk and slowhttptest (Debian); installs them when missing and it may.
set -uo pipefail
cd "$(dirname "$0")/.."
kiln=$(realpath "${1:-.build/release/kiln}")
old=${KILN_OLD_BIN:+$(realpath "$KILN_OLD_BIN")}
slow_seconds=${KILN_HTTP_BENCH_SLOW_SECONDS:-60}
idle_count=${KILN_HTTP_BENCH_IDLE:-10000}
stream_count=${KILN_HTTP_BENCH_STREAMS:-1000}
parts=${KILN_HTTP_BENCH_PARTS:-idle slow streams predict}
clients="python3 $(pwd)/bench/http_clients.py"

ulimit -n "$(ulimit -Hn)"
missing=()
for tool in wrk slowhttptest; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
        echo "{\"note\": \"could not install ${missing[*]}; their parts are skipped\"}"
fi

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mirror_port=$(free_port); port=$(free_port); url=http://127.0.0.1:$port
mkdir -p "$work/mirror" && ln -s "$(cd "${KILN_MNIST:-../shared/data/mnist}" && pwd)" "$work/mirror/mnist"
python3 -m http.server "$mirror_port" --bind 127.0.0.1 --directory "$work/mirror" >/dev/null 2>&1 & mirror_pid=$!
serve_pid=""
stop_server() { [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null; serve_pid=""; }
cleanup() { stop_server; kill "$mirror_pid" 2>/dev/null; wait "$mirror_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start_server() { # binary; run from the work directory so no config/kiln.json is read
    (cd "$work" && exec env KILN_DATASET_MIRROR=http://127.0.0.1:$mirror_port "$1" serve --port "$port" --data-dir "$work/data" >>"$work/serve.log" 2>&1) &
    serve_pid=$!
    for _ in $(seq 200); do curl -sf "$url/healthz" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo '{"note": "server did not start"}'; tail -5 "$work/serve.log" >&2; exit 1
}
post_job() { curl -s "$url/jobs" -H 'Content-Type: application/json' -d "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
status() { curl -s "$url/jobs/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
wait_status() { # id wanted... ; at most 120 s
    for _ in $(seq 600); do s=$(status "$1"); for w in "${@:2}"; do [ "$s" = "$w" ] && return 0; done; sleep 0.2; done; return 1
}

for _ in $(seq 100); do curl -sf "http://127.0.0.1:$mirror_port/" >/dev/null 2>&1 && break; sleep 0.1; done
start_server "$kiln"

# --- 10,000 idle keep-alive connections, then fresh clients' /healthz
if [[ " $parts " == *" idle "* ]]; then
    $clients idle "$port" "$idle_count" 1000 "$serve_pid"
fi

# --- slow headers and slow bodies, 1,000 connections each, while a normal client probes
if [[ " $parts " == *" slow "* ]] && command -v slowhttptest >/dev/null; then
    for mode in H B; do
        if [ "$mode" = H ]; then args=(-H -u "$url/healthz"); else args=(-B -u "$url/predict" -t POST -s 8192); fi
        slowhttptest "${args[@]}" -c 1000 -r 200 -i 10 -x 24 -p 3 -l "$slow_seconds" -o "$work/slow-$mode" >"$work/slow-$mode.log" 2>&1 &
        slow_pid=$!
        sleep 2
        result=$($clients probe "$port" "$((slow_seconds - 4))" 0.1)
        wait "$slow_pid"
        echo "${result%\}}, \"attack\": \"slowhttptest -$mode -c 1000 -l $slow_seconds\"}"
    done
    curl -s "$url/metrics" | grep -E '^kiln_http_(timeouts|connections_rejected|idle_evictions)' | tr '\n' ' ' |
        python3 -c 'import json,sys; print(json.dumps({"test": "counters_after_slow", "lines": sys.stdin.read().strip()}))'
fi

# --- 1,000 ?follow=1 streams on a queued job, opened and abandoned
if [[ " $parts " == *" streams "* ]]; then
    spec=$(python3 -c 'import json; s=json.load(open("examples/w2-free-matrix.json")); s["train"]["epochs"]=100000; print(json.dumps(s))')
    runner=$(post_job "$spec")
    queued=$(post_job "$spec")
    $clients streams "$port" "$queued" "$stream_count" "$serve_pid"
    curl -s -X DELETE "$url/jobs/$queued" >/dev/null; curl -s -X DELETE "$url/jobs/$runner" >/dev/null
    wait_status "$runner" cancelled failed succeeded
fi

# --- /predict, one MNIST image, on the 784-128-10 MLP: wrk -c16 and -c1000
if [[ " $parts " == *" predict "* ]] && command -v wrk >/dev/null; then
    mlp='{"name": "bench-mlp", "model": {"inputs": {"image": [28, 28, 1]}, "layers": [{"type": "flatten"},
          {"type": "dense", "units": 128, "activation": "relu"}, {"type": "dense", "units": 10, "activation": "softmax", "name": "probs"}]},
          "data": {"source": "mnist", "take": {"train": 2000}},
          "train": {"epochs": 1, "batch_size": 128, "seed": 1, "optimizer": {"type": "adam", "learning_rate": 0.001},
                    "losses": [{"node": "probs", "type": "sparse_categorical_crossentropy", "target": "label"}]}}'
    id=$(post_job "$mlp")
    wait_status "$id" succeeded failed
    python3 - "$work/body.json" "$work/mirror/mnist" <<'EOF'
import gzip, json, sys
with gzip.open(sys.argv[2] + "/t10k-images-idx3-ubyte.gz") as f:
    f.read(16); pixels = f.read(784)
image = [[[round(pixels[r * 28 + c] / 255, 4)] for c in range(28)] for r in range(28)]
json.dump({"model": "bench-mlp", "inputs": {"image": [image]}}, open(sys.argv[1], "w"))
EOF
    printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = io.open("%s"):read("a")\n' "$work/body.json" >"$work/post.lua"
    run_wrk() { # label connections
        out=$(wrk -t2 -c"$2" -d10s --latency -s "$work/post.lua" "$url/predict" 2>&1)
        echo "$out" | python3 -c '
import json, re, sys
text = sys.stdin.read()
def find(pattern, cast=float):
    m = re.search(pattern, text)
    return cast(m.group(1)) if m else None
def ms(value, unit):
    return round(float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit], 3)
p = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", text)
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
print(json.dumps({"test": "predict", "binary": sys.argv[1], "connections": int(sys.argv[2]),
                  "requests_per_second": find(r"Requests/sec:\s+([\d.]+)"),
                  "p50_ms": ms(*p50.groups()) if p50 else None, "p99_ms": ms(*p.groups()) if p else None,
                  "non_2xx": find(r"Non-2xx or 3xx responses: (\d+)", int) or 0,
                  "socket_errors": [int(x) for x in errors.groups()] if errors else [0, 0, 0, 0]}))
' "$1" "$2"
    }
    if [ -n "$old" ]; then
        stop_server; start_server "$old"
        $clients cpu "$serve_pid" 8 > "$work/cpu.json" & cpu_pid=$!
        run_wrk old 16; wait "$cpu_pid"; sed 's/"thread_cpu"/"thread_cpu", "binary": "old"/' "$work/cpu.json"
        run_wrk old 1000
        stop_server; start_server "$kiln"
    fi
    $clients cpu "$serve_pid" 8 > "$work/cpu.json" & cpu_pid=$!
    run_wrk new 16; wait "$cpu_pid"; sed 's/"thread_cpu"/"thread_cpu", "binary": "new"/' "$work/cpu.json"
    $clients cpu "$serve_pid" 8 > "$work/cpu.json" & cpu_pid=$!
    run_wrk new 1000; wait "$cpu_pid"; sed 's/"thread_cpu"/"thread_cpu", "binary": "new", "connections": 1000/' "$work/cpu.json"
    if [ -n "$old" ]; then
        stop_server; start_server "$old"
        run_wrk old 16
        stop_server; start_server "$kiln"
        run_wrk new 16
    fi
fi
