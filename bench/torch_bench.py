"""The kiln-bench figures, measured with PyTorch (CPU) on the same models, data, batch
size and optimizer. `python torch_bench.py [kernels|mlp|conv]`, one JSON line per figure.
Run each part in its own process (bench/run.sh does) so peak memory is its own."""
import os
import sys
import time

from bench_common import best, conv_figures, emitter, mlp_figures
from bench_common import idx as read_idx

import torch
import torch.nn as nn
import torch.nn.functional as F



emit = emitter("pytorch")


def sgemm_peak():
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    t = best(8, lambda: torch.mm(a, b, out=c))
    return 2 * n ** 3 / t / 1e9


def memcpy_bandwidth():
    a, b = torch.ones(16 << 20), torch.zeros(16 << 20)
    t = best(8, lambda: b.copy_(a))
    return 2 * a.numel() * 4 / t / 1e9


def kernels():
    peak = sgemm_peak()
    emit("sgemm_peak_1024", peak, "GFLOP/s", threads=torch.get_num_threads())
    bw = memcpy_bandwidth()
    emit("memcpy_bandwidth", bw, "GB/s", note="bytes read + written, 64 MiB (tensor copy_)")

    x = torch.randn(128, 784, requires_grad=True)
    w = torch.randn(784, 512, requires_grad=True)
    b = torch.randn(512, requires_grad=True)
    seed = torch.ones(128, 512)

    def dense():
        y = torch.relu(x @ w + b)
        y.backward(seed)
        x.grad = w.grad = b.grad = None
    t = best(50, dense)
    gf = 3 * 2 * 128 * 784 * 512 / t / 1e9
    emit("dense_784x512_b128_fwd_bwd", gf / peak * 100, "% sgemm peak", gflops=round(gf, 1), ms=round(t * 1e3, 2))

    xc = torch.randn(128, 32, 13, 13, requires_grad=True)
    k = torch.randn(64, 32, 3, 3, requires_grad=True)
    seedc = torch.ones(128, 64, 11, 11)

    def conv():
        y = F.conv2d(xc, k)
        y.backward(seedc)
        xc.grad = k.grad = None
    t = best(10, conv)
    gf = 3 * 2 * 128 * 121 * 288 * 64 / t / 1e9
    emit("conv_32to64_3x3_b128_fwd_bwd", gf / peak * 100, "% sgemm peak", gflops=round(gf, 1), ms=round(t * 1e3, 2))

    big, other = torch.randn(16 << 20), torch.randn(16 << 20)
    t = best(8, lambda: torch.relu(big))
    gbs = 2 * big.numel() * 4 / t / 1e9
    emit("relu_16M", gbs / bw * 100, "% memcpy bandwidth", gbs=round(gbs, 1))
    t = best(8, lambda: big + other)
    gbs = 3 * big.numel() * 4 / t / 1e9
    emit("add_16M", gbs / bw * 100, "% memcpy bandwidth", gbs=round(gbs, 1))


def idx(name):
    shape, values = read_idx(name)
    return torch.frombuffer(bytearray(values), dtype=torch.uint8).reshape(shape)


def mnist(rows):
    """Training rows (a subset validates on the same share of the test images)."""
    images = idx("train-images-idx3-ubyte.gz").float().div_(255)[:rows]
    labels = idx("train-labels-idx1-ubyte.gz").long()[:rows]
    tests = max(1, 10000 * rows // 60000)
    test_images = idx("t10k-images-idx3-ubyte.gz").float().div_(255)[:tests]
    test_labels = idx("t10k-labels-idx1-ubyte.gz").long()[:tests]
    return images, labels, test_images, test_labels


def validate(model, images, labels):
    """Loss and accuracy over the test images in batches of 128, as Keras does."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for s in range(0, images.shape[0], 128):
            out = model(images[s:s + 128])
            loss += F.cross_entropy(out, labels[s:s + 128], reduction="sum").item()
            correct += (out.argmax(1) == labels[s:s + 128]).sum().item()
    return loss / images.shape[0], correct / images.shape[0]


def train(model, images, labels, test_images, test_labels, epochs):
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    times, loss_sum = [], 0.0
    g = torch.Generator().manual_seed(1)
    n = images.shape[0]
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=g)
        loss_sum = 0.0
        for s in range(0, n, 128):
            idx_ = order[s:s + 128]
            x, y = images[idx_], labels[idx_]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx_)
        validate(model, test_images, test_labels)
        times.append(time.perf_counter() - t0)
    return min(times[1:]), loss_sum / n


def mlp():
    rows = int(os.environ.get("KILN_BENCH_MLP_ROWS", 60000))
    images, labels, test_images, test_labels = mnist(rows)
    images, test_images = images.reshape(-1, 784), test_images.reshape(-1, 784)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    seconds, loss = train(model, images, labels, test_images, test_labels, 3)
    seconds *= 60000 / rows
    emit("mlp_epoch_seconds", seconds, "s", rows=rows, note="784-512-512-10, batch 128, Adam, validation on the test images included, the faster of two epochs after a warm-up epoch", loss=loss)
    peak = sgemm_peak()
    mlp_figures(emit, seconds, peak)


def conv():
    rows = int(os.environ.get("KILN_BENCH_CONV_ROWS", 60000))
    images, labels, test_images, test_labels = mnist(rows)
    images, test_images = images.reshape(-1, 1, 28, 28), test_images.reshape(-1, 1, 28, 28)
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))
    seconds, loss = train(model, images, labels, test_images, test_labels, 3)
    conv_figures(emit, seconds, loss, rows)


if __name__ == "__main__":
    {"kernels": kernels, "mlp": mlp, "conv": conv}[sys.argv[1] if len(sys.argv) > 1 else "kernels"]()
