"""Keras in, ONNX out: posts Keras model JSON (the committed fixtures written by
scripts/keras-fixtures.py) as Kiln jobs on small real data uploaded as uint8 arrays,
trains each, exports it to ONNX and checks that ONNX Runtime gives what /predict gives
(within 1e-5) on held-out rows. Run by scripts/keras-roundtrip.sh (the test-only venv
of scripts/onnx-tests.sh). Usage: keras_roundtrip.py BASE_URL [fixture ...]"""
import gzip
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from kiln_http import client

BASE = sys.argv[1].rstrip("/")
ONLY = set(sys.argv[2:])
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests/KilnGraphTests/Fixtures/keras"
MNIST = ROOT / "Tests/Fixtures/mnist"
TOLERANCE = 1e-5
rng = np.random.default_rng(23)


call = client(BASE)


def idx(name):
    """An IDX file of the MNIST fixture as a uint8 array."""
    raw = gzip.open(MNIST / name).read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def upload(name, **arrays):
    """POST /datasets with an .npz of the arrays, dtypes kept (uint8 images)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    status, answer = call("POST", f"/datasets?name={name}", buffer.getvalue(), content_type="application/octet-stream")
    if status != 201:
        raise RuntimeError(f"upload {name}: {status} {answer}")


def datasets():
    """Real MNIST digits from the fixture, stored as uint8 as users upload them: Keras's
    mnist.npz naming; flattened rows; padded to 32x32 with 3 channels for W1's trunk;
    and W4's 30x30 integer grids (0-75) with a binary target for the LSTM."""
    train_x, train_y = idx("train-images-idx3-ubyte.gz")[:512], idx("train-labels-idx1-ubyte.gz")[:512]
    test_x, test_y = idx("t10k-images-idx3-ubyte.gz")[:128], idx("t10k-labels-idx1-ubyte.gz")[:128]
    upload("mnist-u8", x_train=train_x, y_train=train_y, x_test=test_x, y_test=test_y)
    flat = {"image": train_x.reshape(-1, 784), "label": train_y,
            "test.image": test_x.reshape(-1, 784), "test.label": test_y}
    upload("mnist-flat-u8", **flat)

    def rgb32(x):
        return np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1)[:256]
    upload("mnist-rgb32-u8", image=rgb32(train_x), label=train_y[:256],
           **{"test.image": rgb32(test_x)[:64], "test.label": test_y[:64]})
    grids = rng.integers(0, 76, size=(24, 30, 30, 1), dtype=np.uint8)
    upload("grids-u8", x=grids.reshape(24, 900, 1), mask=(grids > 37).astype(np.float32))


# fixture: (dataset, input field, loss, target, epochs, batch size, rows compared)
CASES = {
    "w1_trunk": ("mnist-rgb32-u8", "image", "sparse_categorical_crossentropy", "label", 1, 64, 16),
    "w8_mlp": ("mnist-flat-u8", "image", "sparse_categorical_crossentropy", "label", 2, 64, 64),
    "mlp": ("mnist-u8", "image", "sparse_categorical_crossentropy", "label", 2, 64, 64),
    "mnist_convnet": ("mnist-u8", "image", "sparse_categorical_crossentropy", "label", 1, 64, 64),
    "lstm": ("grids-u8", "x", "binary_crossentropy", "mask", 1, 8, 4),
}


def held_out(dataset, rows):
    """Rows the model did not train on, as /predict and ONNX Runtime take them: floats
    scaled as training scaled the uint8 data, i.e. divided by 255."""
    if dataset == "grids-u8":
        x = rng.integers(0, 76, size=(rows, 900, 1)).astype(np.float32)
    else:
        x = idx("t10k-images-idx3-ubyte.gz")[1000:1000 + rows].astype(np.float32)
        x = {"mnist-u8": lambda a: a[..., None], "mnist-flat-u8": lambda a: a.reshape(-1, 784),
             "mnist-rgb32-u8": lambda a: np.repeat(np.pad(a, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1)}[dataset](x)
    return (x / 255).astype(np.float32)


def run(name):
    dataset, field, loss, target, epochs, batch, rows = CASES[name]
    fixture = json.loads((FIXTURES / f"{name}.json").read_text())
    output = fixture["keras"]["config"]["layers"][-1]["config"]["name"]
    spec = {"name": f"keras-{name}", "model": {"keras": fixture["keras"]}, "data": {"dataset": dataset},
            "train": {"epochs": epochs, "batch_size": batch, "seed": 1, "optimizer": {"type": "adam", "learning_rate": 0.001},
                      "losses": [{"node": output, "type": loss, "target": target}], "metrics": ["accuracy"],
                      "validation": {"split": "test"} if dataset != "grids-u8" else {"fraction": 0.25}}}
    status, created = call("POST", "/jobs", spec)
    if status != 201:
        raise RuntimeError(f"POST /jobs: {status} {created}")
    deadline = time.time() + 300
    while True:
        _, job = call("GET", f"/jobs/{created['id']}")
        if job["status"] == "succeeded":
            break
        if job["status"] in ("failed", "cancelled") or time.time() > deadline:
            raise RuntimeError(f"job {job['status']}: {job.get('error')}")
        time.sleep(0.2)
    _, metrics = call("GET", f"/jobs/{created['id']}/metrics")
    last = metrics["epochs"][-1]
    if any("far outside" in w for w in metrics.get("warnings", [])):
        raise RuntimeError(f"uint8 inputs were not scaled: {metrics['warnings']}")
    status, blob = call("GET", f"/models/keras-{name}/export?format=onnx", raw=True)
    if status != 200:
        raise RuntimeError(f"export: {status} {blob[:300]!r}")
    onnx.checker.check_model(onnx.load_from_string(blob), full_check=True)
    runtime = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    x = held_out(dataset, rows)
    got = runtime.run([output], {field: x})[0]
    status, predicted = call("POST", "/predict", {"model": f"keras-{name}", "inputs": {field: x.tolist()}, "outputs": [output]})
    if status != 200:
        raise RuntimeError(f"predict: {status} {predicted}")
    want = np.asarray(predicted["outputs"][output], dtype=np.float32)
    if want.shape != got.shape:
        raise RuntimeError(f"/predict shape {want.shape}, ONNX Runtime {got.shape}")
    diff = float(np.max(np.abs(want - got) / np.maximum(1, np.abs(want))))
    if not diff <= TOLERANCE:
        raise RuntimeError(f"ONNX Runtime differs from /predict by {diff:.3g} (> {TOLERANCE})")
    score = f"val_accuracy {last.get('val_accuracy', float('nan')):.3f}" if "val_accuracy" in last else f"val_loss {last['val_loss']:.3f}"
    trained = f"{len(metrics['epochs'])} epochs, {sum(e['seconds'] for e in metrics['epochs']):.2f} s training"
    return f"{trained}, {score}; {rows} held-out rows, max relative difference {diff:.2g}"


def main():
    started = time.time()
    datasets()
    failed = 0
    for name in CASES:
        if ONLY and name not in ONLY:
            continue
        start = time.time()
        try:
            print(f"PASS keras {name}: {run(name)} ({time.time() - start:.1f} s)", flush=True)
        except Exception as e:  # noqa: BLE001 — every failure is reported, then counted
            failed += 1
            print(f"FAIL keras {name}: {str(e)[:400]} ({time.time() - start:.1f} s)", flush=True)
    print(f"keras round trip: {failed} failed ({time.time() - started:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
