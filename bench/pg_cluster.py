"""Figures for bench/pg-cluster.sh (standard library only). Prints JSON lines."""
import json
import random
import statistics
import sys
import time
import urllib.error
import urllib.request


def call(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_ready(port):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if call(port, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"node on port {port} did not start")


def spec(name, epochs, units, rows):
    rng = random.Random(3)
    xs = [[rng.random() for _ in range(16)] for _ in range(rows)]
    ys = [[sum(x) / 16] for x in xs]
    return {"name": name,
            "model": {"inputs": {"x": [16]}, "layers": [{"type": "dense", "units": units, "activation": "relu"},
                                                        {"type": "dense", "units": units, "activation": "relu"},
                                                        {"type": "dense", "units": 1, "name": "y"}]},
            "data": {"fields": {"x": xs, "y": ys}},
            "train": {"epochs": epochs, "batch_size": 32, "seed": 5, "optimizer": {"type": "adam", "learning_rate": 0.001},
                      "losses": [{"node": "y", "type": "mse", "target": "y"}]}}


def finish(port, job_id, poll=0.01):
    while True:
        status, job = call(port, "GET", f"/jobs/{job_id}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(poll)


def parse_time(text):
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def landing(trainer, api, models):
    delays = []
    for i in range(models):
        name = f"landing-{i}-{random.randrange(1 << 30)}"
        status, job = call(trainer, "POST", "/jobs", spec(name, 1, 16, 64))
        assert status == 201, job
        body = {"model": name, "instances": [[0.5] * 16]}
        while True:
            status, _ = call(api, "POST", "/predict", body)
            if status == 200:
                served = time.time()
                break
            time.sleep(0.005)
        landed = parse_time(finish(trainer, job["id"])["finished_at"])
        delays.append(served - landed)
    delays.sort()
    print(json.dumps({"figure": "model_landing_to_prediction_on_other_node", "models": models,
                      "p50_ms": round(statistics.median(delays) * 1000, 1),
                      "max_ms": round(delays[-1] * 1000, 1), "target_ms": 1000}))


def post_to_start(trainer, api, samples):
    """A job posted to the api node, started by the idle worker (woken by NOTIFY)."""
    delays = []
    for i in range(samples):
        posted = time.time()
        status, job = call(api, "POST", "/jobs", spec(f"start-{i}", 1, 8, 32))
        assert status == 201, job
        done = finish(trainer, job["id"])
        delays.append(parse_time(done["started_at"]) - posted)
    delays.sort()
    print(json.dumps({"figure": "post_to_start_on_idle_worker", "samples": samples,
                      "p50_ms": round(statistics.median(delays) * 1000, 1),
                      "max_ms": round(delays[-1] * 1000, 1), "target_p50_ms": 100}))


def epoch_seconds(port, runs, epochs, units, rows):
    per_epoch = []
    for r in range(runs):
        status, job = call(port, "POST", "/jobs", spec(f"overhead-{r}", epochs, units, rows))
        assert status == 201, job
        # Polled slowly: the times come from the job record, and a poll must not
        # take CPU from the training it measures.
        done = finish(port, job["id"], poll=0.5)
        assert done["status"] == "succeeded", done
        per_epoch.append((parse_time(done["finished_at"]) - parse_time(done["started_at"])) / epochs)
    return per_epoch


def main():
    trainer, api, local, models, runs = (int(a) for a in sys.argv[1:6])
    epoch_file = sys.argv[6] if len(sys.argv) > 6 else None
    for port in (trainer, api, local):
        wait_ready(port)
    landing(trainer, api, models)
    post_to_start(trainer, api, models)
    # An epoch of about a second on 2 cores; its checkpoint (weights, Adam state) is 3 MB.
    epochs, units, rows = 4, 512, 16384
    directory, database = [], []
    for _ in range(runs):  # interleaved, so load on the shared machine hits both alike
        directory += epoch_seconds(local, 1, epochs, units, rows)
        database += epoch_seconds(trainer, 1, epochs, units, rows)
    d, p = statistics.median(directory), statistics.median(database)
    print(json.dumps({"figure": "epoch_seconds", "units": units, "rows": rows, "epochs": epochs, "runs": runs,
                      "data_directory": round(d, 4), "postgresql": round(p, 4),
                      "overhead_percent": round((p / d - 1) * 100, 1), "target_percent": 5}))
    if epoch_file:
        with open(epoch_file, "w") as f:
            f.write(f"{d}\n")


if __name__ == "__main__":
    main()
