"""The kiln command line as a user runs it: help and version on stdout with exit 0,
help for each command, `train --output` keeping the model artifact that `predict
--model DIR` runs, `train --data-dir` storing it as a job that `predict --model NAME` (and `serve`)
finds, with the same answers."""
import json
import os
import subprocess
import tempfile

from common import URL, call, close, models, predict, run

KILN = os.environ["KILN_BIN"]
SPEC = {
    "name": "cli-model",
    "model": {"inputs": {"x": [2]}, "layers": [{"type": "dense", "units": 2, "activation": "tanh"}, {"type": "dense", "units": 1, "name": "y"}]},
    "data": {"fields": {"x": [[0, 1], [1, 0], [1, 1], [0, 0]], "y": [[1], [1], [0], [0]]}},
    "train": {"epochs": 2, "batch_size": 2, "losses": [{"node": "y", "type": "mse", "target": "y"}]},
}


def kiln(*args, cwd=None):
    return subprocess.run([KILN, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_help_and_version():
    for args in (["--help"], ["-h"], ["help"]):
        r = kiln(*args)
        assert r.returncode == 0 and "USAGE: kiln <subcommand>" in r.stdout and "serve" in r.stdout, (args, r)
    r = kiln("--version")
    assert r.returncode == 0 and r.stdout.startswith("kiln ") and len(r.stdout.split()) == 2, r
    for command in ("serve", "train", "validate", "predict", "jobs", "jobs list", "jobs metrics"):
        for args in ([*command.split(), "--help"], ["help", *command.split()]):
            r = kiln(*args)
            assert r.returncode == 0 and f"USAGE: kiln {command}" in r.stdout, (args, r)
    r = kiln("bogus")
    assert r.returncode == 64 and "Unexpected argument 'bogus'" in r.stderr, r


def test_train_output_then_predict():
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/spec.json", "w") as f:
            json.dump(SPEC, f)
        with open(f"{d}/input.json", "w") as f:
            json.dump({"inputs": {"x": [[0.5, 0.25], [1, 0]]}}, f)
        r = kiln("train", "spec.json", "--output", "artifact", "--data-dir", "data", cwd=d)
        assert r.returncode == 0, r.stderr
        trained = json.loads(r.stdout)
        assert len(trained["epochs"]) == 2 and trained["job"]
        assert sorted(os.listdir(f"{d}/artifact")) == ["checkpoint.safetensors", "model.json", "spec.json"]
        from_dir = kiln("predict", "--model", "artifact", "input.json", cwd=d)
        assert from_dir.returncode == 0, from_dir.stdout + from_dir.stderr
        by_name = kiln("predict", "--model", "cli-model", "--data-dir", "data", "input.json", cwd=d)
        assert by_name.returncode == 0, by_name.stdout + by_name.stderr
        a, b = json.loads(from_dir.stdout)["outputs"]["y"], json.loads(by_name.stdout)["outputs"]["y"]
        assert len(a) == 2
        close(a, b, 0)
        bad = kiln("predict", "--model", "artifact", "spec.json", cwd=d)
        assert bad.returncode == 1 and json.loads(bad.stdout)["error"]["path"].startswith("inputs"), bad.stdout


def test_server_commands():
    env = dict(os.environ, KILN_SERVER=URL)
    ids = models()
    listed = subprocess.run([KILN, "jobs"], capture_output=True, text=True, timeout=60, env=env)
    assert listed.returncode == 0 and ids["m"][0] in listed.stdout and "succeeded" in listed.stdout, listed
    shown = subprocess.run([KILN, "jobs", "show", ids["two"][0]], capture_output=True, text=True, timeout=60, env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["name"] == "two", shown
    followed = kiln("jobs", "metrics", ids["m"][0], "--follow", "--server", URL)
    assert followed.returncode == 0, followed
    assert [json.loads(line)["epoch"] for line in followed.stdout.splitlines()] == [1, 2]
    missing = kiln("jobs", "show", "job-nope", "--server", URL)
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["code"] == "job_not_found"
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/input.json", "w") as f:
            json.dump({"inputs": {"x": [[0.1, 0.2], [0.3, -0.4]]}}, f)
        r = kiln("predict", "--model", "m", "--server", URL, f"{d}/input.json")
        assert r.returncode == 0, r.stdout + r.stderr
        close(json.loads(r.stdout)["outputs"]["y"], predict("m", {"x": [[0.1, 0.2], [0.3, -0.4]]})["y"])
        # A long job, cancelled from the command line.
        spec = dict(SPEC, name="cli-cancel", train=dict(SPEC["train"], epochs=100000))
        status, _, job = call("POST", "/jobs", spec)
        assert status == 201, job
        cancelled = kiln("jobs", "cancel", job["id"], "--server", URL)
        assert cancelled.returncode == 0, cancelled
        _, _, after = call("GET", f"/jobs/{job['id']}")
        for _ in range(100):
            if after["status"] == "cancelled":
                break
            import time
            time.sleep(0.1)
            _, _, after = call("GET", f"/jobs/{job['id']}")
        assert after["status"] == "cancelled", after


run(globals())
