"""The Open Inference Protocol through tritonclient[http], unchanged: health,
metadata, config, repository index, statistics, readiness per version, inference in
JSON and in the binary tensor data extension (FP32, FP64, INT64, UINT8; batch 1 and
8), gzip and deflate request bodies, the classification extension, sync and async.
Every answer equals Kiln's own /predict within 1e-6."""
import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from common import HOSTPORT, close, models, predict, run

client = httpclient.InferenceServerClient(url=HOSTPORT)
ids = models()
rng = np.random.default_rng(3)


def x(batch=2, dtype=np.float32):
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 4, size=(batch, 2)).astype(dtype)
    return rng.uniform(-1, 1, size=(batch, 2)).astype(dtype)


def infer_input(values, datatype, binary=True):
    i = httpclient.InferInput("x", list(values.shape), datatype)
    i.set_data_from_numpy(values, binary_data=binary)
    return i


def test_health_and_server_metadata():
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "kiln" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_config():
    meta = client.get_model_metadata("m")
    assert meta["name"] == "m" and meta["versions"] == ids["m"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
    config = client.get_model_config("m")
    assert config["input"][0]["dims"] == [2] and config["max_batch_size"] > 0
    versioned = client.get_model_metadata("m", model_version=ids["m"][0])
    assert versioned["versions"] == [ids["m"][0]]


def test_readiness_per_version():
    assert client.is_model_ready("m")
    for v in ids["m"]:
        assert client.is_model_ready("m", v)
    assert not client.is_model_ready("m", ids["two"][0])  # a version of another model
    assert not client.is_model_ready("nope")


def test_repository_index():
    index = client.get_model_repository_index()
    by_name = {e["name"]: e for e in index}
    assert by_name["m"]["version"] == ids["m"][-1] and by_name["m"]["state"] == "READY"
    assert "two" in by_name


def test_json_infer_equals_predict():
    values = x()
    result = client.infer("m", [infer_input(values, "FP32", binary=False)],
                          outputs=[httpclient.InferRequestedOutput("y", binary_data=False)])
    close(result.as_numpy("y"), predict("m", {"x": values.tolist()})["y"])
    assert result.get_response()["model_version"] == ids["m"][-1]


def test_binary_default_call_fp32_batch_1_and_8():
    for batch in (1, 8):
        values = x(batch)
        result = client.infer("m", [infer_input(values, "FP32")])   # the default: binary both ways
        close(result.as_numpy("y"), predict("m", {"x": values.tolist()})["y"])


def test_binary_other_datatypes():
    for dtype, name in ((np.float64, "FP64"), (np.int64, "INT64"), (np.uint8, "UINT8")):
        values = x(4, dtype)
        result = client.infer("m", [infer_input(values, name)])
        close(result.as_numpy("y"), predict("m", {"x": values.astype(np.float64).tolist()})["y"])


def test_versioned_infer():
    values = x(3)
    for v in ids["m"]:
        result = client.infer("m", [infer_input(values, "FP32")], model_version=v)
        close(result.as_numpy("y"), predict(v, {"x": values.tolist()})["y"])
        assert result.get_response()["model_version"] == v
    first, second = (client.infer("m", [infer_input(values, "FP32")], model_version=v).as_numpy("y") for v in ids["m"])
    assert not np.allclose(first, second), "two versions trained with different seeds answer alike"


def test_compressed_requests():
    values = x(5)
    expected = predict("m", {"x": values.tolist()})["y"]
    for algorithm in ("gzip", "deflate"):
        for binary in (True, False):
            result = client.infer("m", [infer_input(values, "FP32", binary)], request_compression_algorithm=algorithm)
            close(result.as_numpy("y"), expected)


def test_async_infer():
    values = x(6)
    pending = [client.async_infer("m", [infer_input(values, "FP32")]) for _ in range(4)]
    expected = predict("m", {"x": values.tolist()})["y"]
    for p in pending:
        close(p.get_result().as_numpy("y"), expected)


def test_asyncio_client():
    import asyncio
    import tritonclient.http.aio as aioclient

    async def go():
        c = aioclient.InferenceServerClient(url=HOSTPORT)
        try:
            values = x(2)
            i = aioclient.InferInput("x", [2, 2], "FP32")
            i.set_data_from_numpy(values)
            assert await c.is_model_ready("m")
            result = await c.infer("m", [i])
            close(result.as_numpy("y"), predict("m", {"x": values.tolist()})["y"])
        finally:
            await c.close()
    asyncio.run(go())


def test_two_inputs_named_outputs_and_classification():
    a = rng.uniform(-1, 1, size=(3, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, size=(3, 2)).astype(np.float32)
    ia, ib = httpclient.InferInput("a", [3, 3], "FP32"), httpclient.InferInput("b", [3, 2], "FP32")
    ia.set_data_from_numpy(a)
    ib.set_data_from_numpy(b, binary_data=False)
    expected = predict("two", {"a": a.tolist(), "b": b.tolist()})
    result = client.infer("two", [ia, ib], outputs=[httpclient.InferRequestedOutput("r"), httpclient.InferRequestedOutput("p", binary_data=False)])
    close(result.as_numpy("r"), expected["r"])
    close(result.as_numpy("p"), expected["p"])
    top = client.infer("two", [ia, ib], outputs=[httpclient.InferRequestedOutput("p", class_count=2)]).as_numpy("p")
    assert top.shape == (3, 2)
    for row, probs in zip(top, expected["p"]):
        score, index = row[0].decode().split(":")
        assert int(index) == int(np.argmax(probs)) and abs(float(score) - max(probs)) < 1e-6


def test_statistics():
    before = client.get_inference_statistics("m", model_version=ids["m"][-1])["model_stats"][0]
    client.infer("m", [infer_input(x(4), "FP32")])
    after = client.get_inference_statistics("m", model_version=ids["m"][-1])["model_stats"][0]
    assert after["inference_stats"]["success"]["count"] == before["inference_stats"]["success"]["count"] + 1
    assert after["inference_count"] == before["inference_count"] + 4
    assert after["inference_stats"]["success"]["ns"] > before["inference_stats"]["success"]["ns"]
    every = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in every} >= {"m", "two"}


def test_errors_are_exceptions_with_messages():
    for call in (lambda: client.get_model_metadata("nope"),
                 lambda: client.get_model_config("m", model_version="job-nope"),
                 lambda: client.infer("m", [httpclient.InferInput("q", [1, 2], "FP32").set_data_from_numpy(x(1))])):
        try:
            call()
        except InferenceServerException as e:
            assert isinstance(e.message(), str) and e.message(), e
        else:
            raise AssertionError("no error")


run(globals())
