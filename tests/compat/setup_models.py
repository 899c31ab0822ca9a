"""Trains the tiny models the compatibility tests use and waits for them: `m` twice
(versions 1 and 2), and `two` (inputs a and b; outputs p, a softmax, and r)."""
import json
import os
import random
import time

from common import call

random.seed(1)
rows = [[random.uniform(-1, 1) for _ in range(5)] for _ in range(32)]
m = {
    "name": "m",
    "model": {"inputs": {"x": [2]}, "layers": [{"type": "dense", "units": 3, "activation": "tanh"}, {"type": "dense", "units": 1, "name": "y"}]},
    "data": {"fields": {"x": [r[:2] for r in rows], "y": [[r[0] * r[1]] for r in rows]}},
    "train": {"epochs": 2, "batch_size": 8, "losses": [{"node": "y", "type": "mse", "target": "y"}]},
}
two = {
    "name": "two",
    "model": {
        "inputs": {"a": [3], "b": [2]},
        "layers": [
            {"type": "concatenate", "inputs": ["a", "b"], "name": "ab"},
            {"type": "dense", "units": 4, "activation": "tanh", "name": "h"},
            {"type": "dense", "units": 3, "activation": "softmax", "name": "p"},
            {"type": "dense", "units": 1, "inputs": ["h"], "name": "r"},
        ],
        "outputs": ["p", "r"],
    },
    "data": {"fields": {"a": [r[:3] for r in rows], "b": [r[3:] for r in rows],
                        "p": [[1, 0, 0] if r[0] > 0 else [0, 1, 0] for r in rows], "r": [[r[4]] for r in rows]}},
    "train": {"epochs": 2, "batch_size": 8, "losses": [{"node": "p", "type": "mse", "target": "p"}, {"node": "r", "type": "mse", "target": "r"}]},
}
ids = {"m": [], "two": []}
for spec in (m, dict(m, train=dict(m["train"], seed=7)), two):
    status, _, job = call("POST", "/jobs", spec)
    assert status == 201, job
    ids[spec["name"]].append(job["id"])
    deadline = time.time() + 120
    while True:
        _, _, job = call("GET", f"/jobs/{job['id']}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        assert time.time() < deadline, f"job {job['id']} still {job['status']}"
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
with open(os.path.join(os.environ["KILN_SCRATCH"], "models.json"), "w") as f:
    json.dump(ids, f)
print("trained", ids)
