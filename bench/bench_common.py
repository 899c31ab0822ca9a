"""What the peer benchmarks (torch_bench.py, keras_bench.py) share: where MNIST is,
reading its IDX files, timing, peak memory and the JSON line per figure."""
import gzip
import json
import os
import resource
import struct
import time

# $KILN_MNIST, else the workplace's copy beside the repository (bench/run.sh runs from
# the repository's root).
MNIST = os.environ.get("KILN_MNIST", os.path.join("..", "shared", "data", "mnist"))


def emitter(impl):
    """`emit(figure, value, unit, **extra)` printing one JSON line for `impl`."""
    def emit(figure, value, unit, **extra):
        print(json.dumps({"impl": impl, "figure": figure, "value": round(value, 4), "unit": unit, **extra}), flush=True)
    return emit


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best(repeats, body):
    """The fastest of `repeats` runs of `body`, after one warm-up run."""
    body()
    fastest = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        body()
        fastest = min(fastest, time.perf_counter() - t0)
    return fastest


def idx(name):
    """An MNIST IDX file: its shape and its uint8 values as bytes."""
    with gzip.open(os.path.join(MNIST, name), "rb") as f:
        data = f.read()
    rank = data[3]
    shape = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return shape, data[4 + 4 * rank:]


def mlp_figures(emit, seconds, peak):
    """The MLP's throughput against the sgemm peak, and its peak memory: the work of an
    epoch of 60,000 rows (forward, and backward but for the first layer's input gradient)."""
    macs = 784 * 512 + 512 * 512 + 512 * 10
    gf = 60000 * 2 * (3 * macs - 784 * 512) / seconds / 1e9
    emit("mlp_gflops_share_of_peak", gf / peak * 100, "% sgemm peak", gflops=round(gf, 1), peak_gflops=round(peak, 1))
    emit("mlp_peak_rss", peak_rss_mib(), "MiB")


def conv_figures(emit, seconds, loss, rows):
    """The convnet's epoch, scaled to 60,000 rows when trained on fewer, and its peak memory."""
    note = "the Keras MNIST convnet, batch 128, Adam, validation on the test images included, the faster of two epochs after a warm-up epoch"
    if rows < 60000:
        note += f", on the first {rows} training images (and the same share of the test images), scaled to 60000"
    emit("conv_epoch_seconds", seconds * 60000 / rows, "s", rows=rows, note=note, loss=loss)
    emit("conv_peak_rss", peak_rss_mib(), "MiB")
