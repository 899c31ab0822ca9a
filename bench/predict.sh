#!/usr/bin/env bash
# /predict latency and throughput of `kiln serve` with a small trained MNIST MLP, idle
# and while a job trains. Prints JSON lines. Usage: bench/predict.sh [kiln-bench binary]
set -uo pipefail
cd "$(dirname "$0")/.."
bench=${1:-.build/release/kiln-bench}
kiln=.build/release/kiln
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mirror_port=$(free_port); port=$(free_port)
mkdir -p "$work/mirror" && ln -s "$(cd "${KILN_MNIST:-../shared/data/mnist}" && pwd)" "$work/mirror/mnist"
python3 -m http.server "$mirror_port" --bind 127.0.0.1 --directory "$work/mirror" >/dev/null 2>&1 & mirror_pid=$!
KILN_DATASET_MIRROR=http://127.0.0.1:$mirror_port $kiln serve --port "$port" --data-dir "$work/data" >"$work/serve.log" 2>&1 & serve_pid=$!
cleanup() { kill "$serve_pid" "$mirror_pid" 2>/dev/null; wait "$serve_pid" "$mirror_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
url=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$mirror_port/" >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

job() { # name epochs take layers
    curl -s "$url/jobs" -H 'Content-Type: application/json' -d '{
      "name": "'"$1"'",
      "model": {"inputs": {"image": [28, 28, 1]}, "layers": ['"$4"']},
      "data": {"source": "mnist", "take": {"train": '"$3"'}},
      "train": {"epochs": '"$2"', "batch_size": 128, "seed": 1, "optimizer": {"type": "adam", "learning_rate": 0.001},
                "losses": [{"node": "probs", "type": "sparse_categorical_crossentropy", "target": "label"}]}}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
status() { curl -s "$url/jobs/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
tiny='{"type": "flatten"}, {"type": "dense", "units": 32, "activation": "relu"}, {"type": "dense", "units": 10, "activation": "softmax", "name": "probs"}'
id=$(job bench-tiny 1 2000 "$tiny") || { echo '{"note": "predict skipped: could not create the training job"}'; exit 0; }
for _ in $(seq 600); do s=$(status "$id"); [ "$s" = succeeded ] || [ "$s" = failed ] && break; sleep 0.2; done
[ "$s" = succeeded ] || { echo "{\"note\": \"predict skipped: tiny job $s\"}"; tail -5 "$work/serve.log" >&2; exit 0; }

body=$work/body.json
measure() { # label
    KILN_BENCH_BODY=$body $bench predict "$port" bench-tiny "$1" 3000
    if command -v wrk >/dev/null; then
        printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = io.open("%s"):read("a")\n' "$body" >"$work/post.lua"
        rps=$(wrk -t2 -c16 -d5s -s "$work/post.lua" "$url/predict" | awk '/Requests\/sec/ {print $2}')
        non2xx=$(wrk -t2 -c16 -d1s -s "$work/post.lua" "$url/predict" | awk '/Non-2xx/ {print $4}')
        echo "{\"impl\": \"kiln\", \"figure\": \"predict_rps_$1\", \"value\": ${rps:-0}, \"unit\": \"req/s\", \"note\": \"wrk -t2 -c16 -d5s, one MNIST image per request\", \"non_2xx\": ${non2xx:-0}}"
    else
        echo '{"note": "wrk not installed (apt-get install wrk): requests/s skipped"}'
    fi
}
measure idle
big='{"type": "flatten"}, {"type": "dense", "units": 512, "activation": "relu"}, {"type": "dense", "units": 512, "activation": "relu"}, {"type": "dense", "units": 10, "activation": "softmax", "name": "probs"}'
busy=$(job bench-busy 50 60000 "$big")
for _ in $(seq 300); do [ "$(status "$busy")" = running ] && break; sleep 0.2; done
sleep 1
measure training
curl -s -X DELETE "$url/jobs/$busy" >/dev/null
