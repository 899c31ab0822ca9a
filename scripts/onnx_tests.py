"""Trains small models on a running Kiln, exports each to ONNX and checks that ONNX
Runtime gives what /predict gives. Run by scripts/onnx-tests.sh (test-only venv with
onnx, onnxruntime and numpy). Usage: onnx_tests.py BASE_URL [case-name ...]"""
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
TOLERANCE = 1e-5
ROWS = 20
rng = np.random.default_rng(17)


call = client(BASE)


# MARK: - the cases: one per layer type (several types share a model where they chain)

def m(inputs, layers, outputs=None):
    model = {"inputs": inputs, "layers": layers}
    if outputs:
        model["outputs"] = outputs
    return model


ACTIVATIONS = ["linear", "relu", "elu", "selu", "gelu", "sigmoid", "tanh", "softmax", "softplus", "exponential", "leaky_relu"]
FUNCTIONS = "exp(x/4) + log(abs(x) + 1) + sqrt(square(x) + 1) + sin(x) * cos(x) + tanh(x) + sigmoid(x) + relu(x) + elu(x)" \
            " + selu(x) + gelu(x) + softplus(x) + floor(x * 3) + leaky_relu(x) + pow(abs(x) + 0.5, 1.5) + mod(x * 5, 1.3)" \
            " + mod(x * 5, -0.7) + min(x, 0.2) + max(x, -0.2) - x / 3 + x ^ 2"

CASES = {
    "dense": (m({"x": [6]}, [{"type": "dense", "units": 5, "activation": "tanh", "name": "h"},
                             {"type": "dense", "units": 3, "use_bias": False, "name": "out"}], ["out", "h"]), {}),
    "activation": (m({"x": [6]}, [{"type": "dense", "units": 4, "name": "d"}] +
                     [{"type": "activation", "activation": a, "input": "d", "name": f"act_{a}"} for a in ACTIVATIONS],
                     [f"act_{a}" for a in ACTIVATIONS]), {}),
    "softmax": (m({"x": [3, 4]}, [{"type": "softmax", "axis": 1, "name": "s1"}, {"type": "softmax", "input": "x", "name": "s2"}],
                  ["s2", "s1"]), {}),
    "flatten_reshape_permute_transpose": (m({"x": [2, 3, 4]}, [
        {"type": "dense", "units": 4, "name": "d"},
        {"type": "permute", "dims": [3, 1, 2], "name": "p"},
        {"type": "transpose", "name": "t"},
        {"type": "transpose", "perm": [0, 3, 2, 1], "name": "t2"},
        {"type": "reshape", "shape": [-1, 6], "name": "r"},
        {"type": "flatten", "name": "f"}], ["f", "t", "r"]), {}),
    "concatenate_slice": (m({"a": [3, 2], "b": [3, 5]}, [
        {"type": "concatenate", "inputs": ["a", "b"], "name": "c"},
        {"type": "slice", "input": "c", "axis": -1, "start": 1, "end": -2, "name": "s"},
        {"type": "slice", "input": "c", "axis": 1, "start": -2, "name": "s2"},
        {"type": "dense", "input": "s", "units": 2, "name": "out"}], ["out", "c", "s2"]), {}),
    "embedding": (m({"ids": [5]}, [{"type": "embedding", "input_dim": 7, "output_dim": 3, "name": "e"}, {"type": "flatten"},
                                   {"type": "dense", "units": 2, "name": "out"}], ["out", "e"]), {"ids": "ids7"}),
    "one_hot": (m({"ids": [1]}, [{"type": "one_hot", "classes": 4, "name": "oh"}, {"type": "dense", "units": 2, "name": "out"}],
                  ["out", "oh"]), {"ids": "ids4"}),
    "merge": (m({"a": [4], "b": [4]}, [
        {"type": "add", "inputs": ["a", "b"], "name": "add"},
        {"type": "subtract", "inputs": ["a", "b"], "name": "sub"},
        {"type": "multiply", "inputs": ["a", "b", "add"], "name": "mul"},
        {"type": "average", "inputs": ["a", "b", "sub"], "name": "avg"},
        {"type": "dense", "input": "mul", "units": 3, "name": "out"}], ["out", "add", "sub", "mul", "avg"]), {}),
    "matmul_reduce": (m({"a": [3, 4], "b": [3, 4]}, [
        {"type": "matmul", "inputs": ["a", "b"], "transpose_b": True, "name": "ab"},
        {"type": "matmul", "inputs": ["a", "b"], "transpose_a": True, "name": "atb"},
        {"type": "weight", "shape": [4, 2], "name": "w"},
        {"type": "matmul", "inputs": ["a", "w"], "name": "aw"},
        {"type": "sum", "input": "ab", "name": "sum"},
        {"type": "mean", "input": "atb", "axis": -1, "keepdims": True, "name": "mean"},
        {"type": "max", "input": "aw", "axis": [1], "name": "max"},
        {"type": "dense", "input": "aw", "units": 2, "name": "out"}], ["out", "ab", "atb", "sum", "mean", "max", "w"]), {}),
    # The constant has the sample's rank: a [1, 3] constant added to a (batch, 3) input
    # is inferred as (batch, 1, 3) but computed as (batch, 3) (see docs/onnx.md).
    "weight_constant": (m({"x": [3]}, [
        {"type": "weight", "shape": [3], "name": "w", "initializer": {"type": "normal", "stddev": 1}},
        {"type": "constant", "value": [1.0, -2.0, 0.5], "name": "c"},
        {"type": "multiply", "inputs": ["x", "w"], "name": "xw"},
        {"type": "add", "inputs": ["xw", "c"], "name": "out"}], ["out", "w", "c"]), {}),
    "elementwise_weights_bias": (m({"x": [3, 4]}, [
        {"type": "elementwise_weights", "name": "ew"},
        {"type": "bias", "axis": 1, "name": "b1"},
        {"type": "bias", "name": "b2"}], ["b2", "ew", "b1"]), {}),
    "taylor": (m({"x": [4]}, [
        {"type": "taylor", "order": 3, "units": 3, "activation": "sigmoid", "name": "td"},
        {"type": "taylor", "mode": "elementwise", "order": 2, "input": "x", "name": "te"}], ["td", "te"]), {}),
    "expression": (m({"x": [5], "y": [5]}, [
        {"type": "expression", "inputs": {"x": "x"}, "expr": FUNCTIONS, "name": "f"},
        {"type": "expression", "inputs": {"x": "x", "y": "y"}, "expr": "x * k + y / (abs(k) + 1) - 2", "name": "g",
         "params": {"k": {"shape": [5], "init": {"type": "normal", "stddev": 1}}}},
        {"type": "dense", "input": "g", "units": 2, "name": "out"}], ["out", "f", "g"]), {}),
    "conv2d": (m({"image": [7, 6, 2]}, [
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "activation": "relu", "name": "valid"},
        {"type": "conv2d", "input": "image", "filters": 2, "kernel_size": [3, 2], "strides": 2, "padding": "same", "name": "strided"},
        {"type": "conv2d", "input": "image", "filters": 2, "kernel_size": 2, "dilation_rate": 2, "padding": "same", "name": "dilated"},
        {"type": "flatten", "input": "valid"}, {"type": "dense", "units": 2, "name": "out"}], ["out", "valid", "strided", "dilated"]), {}),
    "conv2d_transpose": (m({"image": [4, 5, 3]}, [
        {"type": "conv2d_transpose", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", "name": "same"},
        {"type": "conv2d_transpose", "input": "image", "filters": 2, "kernel_size": 4, "strides": 2, "padding": "same", "name": "same_even"},
        {"type": "conv2d_transpose", "input": "image", "filters": 2, "kernel_size": 3, "strides": 2, "name": "valid"},
        {"type": "conv2d_transpose", "input": "image", "filters": 2, "kernel_size": 1, "strides": 3, "name": "valid_small"},
        {"type": "conv2d_transpose", "input": "image", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same",
         "output_padding": 0, "activation": "sigmoid", "name": "padded"},
        {"type": "flatten", "input": "same"}, {"type": "dense", "units": 2, "name": "out"}],
        ["out", "same", "same_even", "valid", "valid_small", "padded"]), {}),
    "conditional_conv2d": (m({"image": [6, 6, 2], "label": [3]}, [
        {"type": "conditional_conv2d", "inputs": ["image", "label"], "classes": 3, "filters": 2, "kernel_size": 3,
         "padding": "same", "activation": "tanh", "name": "cc"},
        {"type": "flatten"}, {"type": "dense", "units": 2, "name": "out"}], ["out", "cc"]), {"label": "onehot3"}),
    "pooling_upsampling": (m({"image": [7, 6, 2]}, [
        {"type": "max_pool2d", "name": "maxp"},
        {"type": "max_pool2d", "input": "image", "pool_size": 3, "strides": 2, "padding": "same", "name": "maxp_same"},
        {"type": "avg_pool2d", "input": "image", "pool_size": 3, "strides": 2, "padding": "same", "name": "avgp_same"},
        {"type": "avg_pool2d", "input": "image", "pool_size": [2, 3], "name": "avgp"},
        {"type": "global_avg_pool2d", "input": "image", "name": "gap"},
        {"type": "upsampling2d", "input": "maxp", "size": [2, 3], "name": "up"},
        {"type": "flatten", "input": "up"}, {"type": "dense", "units": 2, "name": "out"}],
        ["out", "maxp", "maxp_same", "avgp_same", "avgp", "gap", "up"]), {}),
    "normalization_noise": (m({"x": [3, 4]}, [
        {"type": "dense", "units": 4, "name": "d"},
        {"type": "batch_norm", "name": "bn"},
        {"type": "layer_norm", "input": "d", "name": "ln"},
        {"type": "dropout", "input": "ln", "rate": 0.3, "name": "drop"},
        {"type": "gaussian_noise", "input": "drop", "stddev": 0.5, "name": "noise"},
        {"type": "add", "inputs": ["bn", "noise"], "name": "out"}], ["out", "bn", "ln"]), {}),
    "lstm_gru": (m({"seq": [5, 3]}, [
        {"type": "lstm", "units": 4, "return_sequences": True, "name": "lstm_seq"},
        {"type": "lstm", "input": "seq", "units": 3, "name": "lstm_last"},
        {"type": "gru", "input": "seq", "units": 4, "return_sequences": True, "name": "gru_seq"},
        {"type": "gru", "input": "lstm_seq", "units": 2, "name": "gru_last"},
        {"type": "concatenate", "inputs": ["lstm_last", "gru_last"], "name": "out"}], ["out", "lstm_seq", "gru_seq"]), {}),
    "sample_normal": (m({"x": [4]}, [
        {"type": "dense", "units": 2, "name": "mu"}, {"type": "dense", "input": "x", "units": 2, "name": "log_var"},
        {"type": "sample_normal", "inputs": ["mu", "log_var"], "name": "z"}], ["z", "mu"]), {"compare": ["mu"]}),
}

# W1–W10: the examples' models as they are, trained briefly on random inline rows.
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WORKLOADS = {
    # Its softmax saturates after one epoch on random rows, so the dense layer is compared too.
    "w1-taylor-head": {"exports": [{}, {"outputs": ["dense_1"]}]}, "w2-free-matrix": {}, "w3-mod-weights": {}, "w3-plain-mlp": {},
    "w4-grid-cnn": {"x": "binary"}, "w4-grid-dense": {"x": "binary"}, "w4-grid-lstm": {"x": "binary"},
    "w5-transformed-output": {}, "w6-unflatten": {}, "w7-conv-transpose": {}, "w8-kernel-network": {"label": "labels10"},
    "w9-cond-conv-fixed": {"label_onehot": "onehot10"}, "w9-cond-conv-learned": {"label_onehot": "onehot10"},
    "w9-cond-conv-modulated": {"label_onehot": "onehot10"},
    # The prediction graph users run: mu from an image, recon from a code fed in as z.
    "w10-conv-vae": {"exports": [{"outputs": ["mu"]}, {"outputs": ["recon"], "inputs": ["z"]}]},
}


def values(kind, shape):
    n = shape[0]
    if kind == "ids7":
        return rng.integers(0, 7, size=shape).astype(np.float32)
    if kind == "ids4":
        return rng.integers(0, 4, size=shape).astype(np.float32)
    if kind == "binary":
        return (rng.random(shape) < 0.3).astype(np.float32)
    if kind and kind.startswith("onehot"):
        k = int(kind[6:])
        return np.eye(k, dtype=np.float32)[np.arange(n) % k]
    if kind == "labels10":
        return (np.arange(n) % 10).astype(np.float32).reshape(shape)
    return rng.normal(0, 1, size=shape).astype(np.float32)


def summary_shapes(summary):
    return {n["name"]: n["output_shape"] for n in summary["nodes"]}


def train(name, model, kinds):
    """Posts the model with random inline data and an mse loss on its first output."""
    fields = {}
    for inp, dims in model.get("inputs", {}).items():
        fields[inp] = values(kinds.get(inp), [ROWS] + dims).tolist()
    for extra, kind in kinds.items():
        if extra not in fields and isinstance(kind, str) and extra not in ("compare",):
            fields[extra] = values(kind, [ROWS, 1] if kind == "labels10" else [ROWS, int(kind[6:])]).tolist()
    # The data goes along: a constant taken from the data needs its fields' shapes.
    status, checked = call("POST", "/validate", {"model": model, **({"data": {"fields": fields}} if fields else {})})
    if status != 200:
        raise RuntimeError(f"validate: {status} {checked}")
    shapes = summary_shapes(checked["summary"])
    first = model.get("outputs", [model["layers"][-1].get("name")])[0]
    out_shape = shapes[first]
    batched = out_shape and out_shape[0] is None
    loss = {"node": first, "type": "mse"}
    if batched and fields:
        fields["kiln_target"] = rng.normal(0, 0.5, size=[ROWS] + out_shape[1:]).astype(np.float32).tolist()
        loss["target"] = "kiln_target"
        data = {"fields": fields}
    else:
        loss["target"] = {"value": np.zeros([d for d in out_shape if d is not None]).tolist()}
        data = {"source": "none", "steps_per_epoch": 3}
    spec = {"name": name, "model": model, "data": data,
            "train": {"epochs": 1, "batch_size": 8, "seed": 3, "optimizer": {"type": "adam", "learning_rate": 0.01}, "losses": [loss]}}
    status, created = call("POST", "/jobs", spec)
    if status != 201:
        raise RuntimeError(f"POST /jobs: {status} {created}")
    deadline = time.time() + 600
    while time.time() < deadline:
        _, job = call("GET", f"/jobs/{created['id']}")
        if job["status"] == "succeeded":
            return shapes
        if job["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"job {job['status']}: {job.get('error')}")
        time.sleep(0.2)
    raise RuntimeError("training did not finish in 600 s")


def check(name, model, shapes, kinds, outputs=None, given=None):
    """Exports, checks with onnx.checker, runs ONNX Runtime and /predict on the same
    fresh inputs; returns the largest difference over the compared outputs."""
    query = "format=onnx"
    if outputs:
        query += "&outputs=" + ",".join(outputs)
    if given:
        query += "&inputs=" + ",".join(given)
    started = time.time()
    status, blob = call("GET", f"/models/{name}/export?{query}", raw=True)
    exported = time.time() - started
    if status != 200:
        raise RuntimeError(f"export: {status} {blob[:300]!r}")
    proto = onnx.load_from_string(blob)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    runtime = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in runtime.get_inputs():
        dims = [d for d in shapes[i.name] if d is not None]
        batch = i.shape[0] == "batch"
        feeds[i.name] = values(kinds.get(i.name), [3] + dims if batch else dims)
    names = [o.name for o in runtime.get_outputs()]
    got = dict(zip(names, runtime.run(None, feeds)))
    body = {"model": name, "inputs": {k: v.tolist() for k, v in feeds.items()}, "outputs": names}
    status, predicted = call("POST", "/predict", body)
    if status != 200:
        raise RuntimeError(f"predict: {status} {predicted}")
    worst = 0.0
    for o in kinds.get("compare", names):
        want = np.asarray(predicted["outputs"][o], dtype=np.float32)
        if want.shape != got[o].shape:
            raise RuntimeError(f"{o}: /predict shape {want.shape}, ONNX Runtime {got[o].shape}")
        diff = float(np.max(np.abs(want - got[o]) / np.maximum(1, np.abs(want)))) if want.size else 0.0
        if not diff <= TOLERANCE:
            raise RuntimeError(f"{o}: differs by {diff:.3g} (> {TOLERANCE})")
        worst = max(worst, diff)
    return worst, len(blob), exported


def main():
    results = []
    todo = [(n, model, kinds, [{}]) for n, (model, kinds) in CASES.items()]
    for n, extra in WORKLOADS.items():
        spec = json.loads((EXAMPLES / f"{n}.json").read_text())
        kinds = {k: v for k, v in extra.items() if k != "exports"}
        todo.append((n, spec["model"], kinds, extra.get("exports", [{}])))
    for name, model, kinds, exports in todo:
        if ONLY and name not in ONLY:
            continue
        start = time.time()
        try:
            shapes = train(name, model, kinds)
            checks = [check(name, model, shapes, kinds, e.get("outputs"), e.get("inputs")) for e in exports]
            worst = max(c[0] for c in checks)
            size = ", ".join(f"{c[1]} bytes exported in {c[2] * 1000:.0f} ms" for c in checks)
            results.append((name, True, f"max relative difference {worst:.2g}; {size}"))
        except Exception as e:  # noqa: BLE001 — every failure is reported, then counted
            results.append((name, False, str(e)[:400]))
        print(f"{'PASS' if results[-1][1] else 'FAIL'} {name}: {results[-1][2]} ({time.time() - start:.1f} s)", flush=True)
    failed = [r for r in results if not r[1]]
    print(f"{len(results) - len(failed)}/{len(results)} passed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
