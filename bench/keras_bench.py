"""The kiln-bench training figures, measured with Keras 3 on JAX (CPU) on the same models,
data, batch size and optimizer, validation on the test images included.
`python keras_bench.py [kernels|mlp|conv]`, one JSON line per figure. Run each part in
its own process (bench/run.sh does) so peak memory is its own. Needs `jax` and `keras`
in bench/.venv only; nothing in Kiln's build or tests uses them."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import sys
import time

from bench_common import best, conv_figures, emitter, mlp_figures
from bench_common import idx as read_idx

import numpy as np



emit = emitter("keras-jax")


def sgemm_peak():
    """jnp.dot on 1024³ (XLA's CPU dot), checked against numpy in float64."""
    import jax
    import jax.numpy as jnp
    n = 1024
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    t = best(8, lambda: dot(ja, jb).block_until_ready())
    c = np.asarray(dot(ja, jb))
    reference = a.astype(np.float64) @ b.astype(np.float64)
    correct = bool(np.all(np.abs(c - reference) <= 1e-3 * np.maximum(1, np.abs(reference))))
    return 2 * n ** 3 / t / 1e9, correct


def kernels():
    peak, correct = sgemm_peak()
    emit("sgemm_peak_1024", peak, "GFLOP/s", kernel="jax.numpy.dot (XLA CPU)", correct=correct)


def idx(name):
    shape, values = read_idx(name)
    return np.frombuffer(values, dtype=np.uint8).reshape(shape)


def mnist(rows):
    """Training rows (a subset validates on the same share of the test images)."""
    x = idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255
    y = idx("train-labels-idx1-ubyte.gz").astype(np.int32)
    xt = idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255
    yt = idx("t10k-labels-idx1-ubyte.gz").astype(np.int32)
    tests = max(1, 10000 * rows // 60000)
    return x[:rows], y[:rows], xt[:tests], yt[:tests]


class EpochTimes:
    """Seconds from each epoch's start to its end, after its validation pass."""

    def __init__(self):
        import keras
        outer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                outer.times.append(time.perf_counter() - outer.start)
                outer.loss = logs.get("loss")

        self.times, self.loss, self.start = [], None, 0.0
        self.callback = Callback()


def train(model, x, y, xt, yt, epochs=3):
    import keras
    keras.utils.set_random_seed(1)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimes()
    model.fit(x, y, batch_size=128, epochs=epochs, validation_data=(xt, yt), shuffle=True, verbose=0,
              callbacks=[timer.callback])
    return min(timer.times[1:]), timer.loss


def mlp():
    import keras
    rows = int(os.environ.get("KILN_BENCH_MLP_ROWS", 60000))
    x, y, xt, yt = mnist(rows)
    x, xt = x.reshape(-1, 784), xt.reshape(-1, 784)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(512, activation="relu"),
        keras.layers.Dense(512, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    seconds, loss = train(model, x, y, xt, yt)
    seconds *= 60000 / rows
    emit("mlp_epoch_seconds", seconds, "s", rows=rows,
         note="784-512-512-10, batch 128, Adam, validation on the test images included, the faster of two epochs after a warm-up epoch",
         loss=loss)
    peak, _ = sgemm_peak()
    mlp_figures(emit, seconds, peak)


def conv():
    import keras
    rows = int(os.environ.get("KILN_BENCH_CONV_ROWS", 60000))
    x, y, xt, yt = mnist(rows)
    x, xt = x.reshape(-1, 28, 28, 1), xt.reshape(-1, 28, 28, 1)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
    seconds, loss = train(model, x, y, xt, yt)
    conv_figures(emit, seconds, loss, rows)


if __name__ == "__main__":
    {"kernels": kernels, "mlp": mlp, "conv": conv}[sys.argv[1] if len(sys.argv) > 1 else "kernels"]()
