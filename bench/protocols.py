"""Latency of one prediction through each serving protocol against a running Kiln, with
the clients users have: /predict and TF Serving (requests, JSON), tritonclient JSON and
binary. A 784-64-10 MLP (trained here on random rows), batches of 1 and 64 rows; p50 and
p99 over a bounded number of calls on loopback, and the server's own mean time per call
(from /v2/models/{name}/stats) to tell server from client cost. One JSON line per figure; nothing is
asserted. Run by bench/protocols.sh."""
import json
import os
import random
import time

import numpy as np
import requests
import tritonclient.http as httpclient

URL = os.environ["KILN_URL"]
CALLS = int(os.environ.get("KILN_BENCH_CALLS", "300"))
random.seed(0)
rows = [[random.random() for _ in range(784)] for _ in range(64)]
spec = {
    "name": "bench-mlp",
    "model": {"inputs": {"image": [784]}, "layers": [{"type": "dense", "units": 64, "activation": "relu"}, {"type": "dense", "units": 10, "activation": "softmax", "name": "probs"}]},
    "data": {"fields": {"image": rows, "label": [[1 if j == i % 10 else 0 for j in range(10)] for i in range(64)]}},
    "train": {"epochs": 1, "batch_size": 16, "losses": [{"node": "probs", "type": "categorical_crossentropy", "target": "label"}]},
}
job = requests.post(f"{URL}/jobs", json=spec).json()
deadline = time.time() + 120
while requests.get(f"{URL}/jobs/{job['id']}").json()["status"] != "succeeded":
    assert time.time() < deadline, "training did not finish"
    time.sleep(0.1)

http = requests.Session()
triton = httpclient.InferenceServerClient(url=URL.split("://", 1)[1])


def server_time():
    """(calls, seconds) the server spent answering, from its statistics."""
    success = requests.get(f"{URL}/v2/models/bench-mlp/stats").json()["model_stats"][0]["inference_stats"]["success"]
    return success["count"], success["ns"] / 1e9


def measure(name, batch, call):
    for _ in range(10):
        call()
    times = []
    calls_before, seconds_before = server_time()
    for _ in range(CALLS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    calls_after, seconds_after = server_time()
    times.sort()
    print(json.dumps({"figure": name, "batch": batch, "calls": CALLS,
                      "p50_ms": round(times[len(times) // 2] * 1e3, 3), "p99_ms": round(times[int(len(times) * 0.99) - 1] * 1e3, 3),
                      "server_mean_ms": round((seconds_after - seconds_before) / max(calls_after - calls_before, 1) * 1e3, 3)}))


for batch in (1, 64):
    x = rows[:batch]
    array = np.asarray(x, dtype=np.float32)
    body = json.dumps({"model": "bench-mlp", "inputs": {"image": x}})
    measure("predict_json", batch, lambda: http.post(f"{URL}/predict", data=body, headers={"Content-Type": "application/json"}).raise_for_status())
    tf = json.dumps({"instances": x})
    measure("tfserving_rows_json", batch, lambda: http.post(f"{URL}/v1/models/bench-mlp:predict", data=tf, headers={"Content-Type": "application/json"}).raise_for_status())

    def triton_call(binary):
        i = httpclient.InferInput("image", [batch, 784], "FP32")
        i.set_data_from_numpy(array, binary_data=binary)
        return lambda: triton.infer("bench-mlp", [i], outputs=[httpclient.InferRequestedOutput("probs", binary_data=binary)]).as_numpy("probs")
    measure("triton_json", batch, triton_call(False))
    measure("triton_binary", batch, triton_call(True))
