#!/usr/bin/env python3
"""Writes the Keras model fixtures of Tests/KilnGraphTests/Fixtures/keras/*.json.

    scripts/keras-fixtures.py            # makes .venv-keras (keras + jax[cpu]) if needed

Each fixture holds what Keras itself writes and reports for one model:
  {"keras": <json.loads(model.to_json())>,
   "count_params": model.count_params(),
   "layers": {<layer name>: {"output_shape": [...], "count_params": n}},
   "compile": {"loss": ..., "metrics": [...]}}
Output shapes exclude the batch axis. Keras is needed only to regenerate these files;
it is never a build or test dependency of Kiln.
"""
import json, os, pathlib, subprocess, sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-keras"
OUT = ROOT / "Tests" / "KilnGraphTests" / "Fixtures" / "keras"

if os.environ.get("KILN_KERAS_VENV") != "1":
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(python), "-m", "pip", "install", "--quiet", "keras", "jax[cpu]"])
    env = dict(os.environ, KILN_KERAS_VENV="1", KERAS_BACKEND="jax")
    sys.exit(subprocess.call([str(python), __file__] + sys.argv[1:], env=env))

import keras
from keras import layers, regularizers, initializers

keras.utils.set_random_seed(1)


def mlp():
    return keras.Sequential([
        keras.Input((28, 28, 1), name="image"),
        layers.Flatten(),
        layers.Dense(512, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(10, activation="softmax", name="probs"),
    ], name="mlp"), ("sparse_categorical_crossentropy", ["accuracy"])


def mnist_convnet():
    # The convnet of the Keras example "Simple MNIST convnet".
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1), name="image"),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ], name="mnist_convnet"), (keras.losses.SparseCategoricalCrossentropy(), ["sparse_categorical_accuracy"])


def lstm():
    # W4's third form: an LSTM over the 900 cells with a per-step dense sigmoid.
    return keras.Sequential([
        keras.Input((900, 1), name="x"),
        layers.LSTM(32, return_sequences=True),
        layers.Dense(1, activation="sigmoid"),
        layers.Reshape((30, 30, 1)),
    ], name="lstm"), ("binary_crossentropy", ["binary_accuracy", keras.metrics.AUC(), keras.metrics.Precision(), keras.metrics.Recall()])


def text_gru():
    return keras.Sequential([
        keras.Input((20,), dtype="int32", name="tokens"),
        layers.Embedding(1000, 16),
        layers.GRU(24, return_sequences=True),
        layers.LSTM(8, unit_forget_bias=False, recurrent_initializer="glorot_uniform"),
        layers.Dense(3, activation="softmax"),
    ], name="text_gru"), ("kl_divergence", ["categorical_accuracy", keras.metrics.TopKCategoricalAccuracy(k=2)])


def two_inputs():
    a = keras.Input((16,), name="a")
    b = keras.Input((16,), name="b")
    da = layers.Dense(32, activation="relu", name="dense_a")(a)
    db = layers.Dense(32, activation="tanh", name="dense_b", use_bias=False)(b)
    s = layers.Add(name="sum")([da, db])
    m = layers.Multiply(name="product")([da, db])
    c = layers.Concatenate(name="joined")([s, m, a])
    n = layers.LayerNormalization(name="norm")(c)
    out = layers.Dense(1, name="score")(n)
    aux = layers.Dense(4, activation="softmax", name="aux")(s)
    return keras.Model([a, b], [out, aux], name="two_inputs"), (["mse", "categorical_crossentropy"], [["mae"], ["accuracy"]])


def w1_trunk():
    # W1's CNN trunk (conv32-conv32-pool-dropout-flatten-dense512-dropout); the Taylor
    # head is Kiln's own layer, so the Keras model ends with a plain dense softmax.
    return keras.Sequential([
        keras.Input((32, 32, 3), name="image"),
        layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                      kernel_regularizer=regularizers.L2(1e-4)),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(512, activation="relu", activity_regularizer=regularizers.L1L2(l1=1e-5, l2=1e-4)),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax", name="probs"),
    ], name="w1_trunk"), ("categorical_crossentropy", ["accuracy", "top_k_categorical_accuracy"])


def w8_mlp():
    # W8's data and classes with an MLP in place of the kernel network.
    return keras.Sequential([
        keras.Input((784,), name="image"),
        layers.Dense(128, activation="exponential", kernel_initializer=initializers.RandomNormal(stddev=0.01)),
        layers.Dense(64, activation="gelu", bias_initializer=initializers.Constant(0.1)),
        layers.Dense(10, activation="softmax"),
    ], name="w8_mlp"), (keras.losses.CategoricalCrossentropy(), [keras.metrics.CategoricalAccuracy()])


def conv_catalog():
    # Every image layer of the catalog with non-default options.
    x = keras.Input((16, 16, 3), name="image")
    y = layers.Conv2D(8, (3, 5), strides=(2, 1), padding="same", use_bias=False, name="strided")(x)
    y = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")(y)
    y = layers.Activation("elu", name="act")(y)
    y = layers.Conv2D(8, 3, dilation_rate=2, padding="same", activation="selu",
                      kernel_initializer="lecun_normal", name="dilated")(y)
    y = layers.AveragePooling2D(2, strides=1, padding="same", name="avg")(y)
    y = layers.Conv2DTranspose(6, 3, strides=2, padding="same", output_padding=1, name="up_conv")(y)
    y = layers.Conv2DTranspose(4, 5, strides=2, padding="valid", activation="sigmoid", name="up_valid")(y)
    y = layers.MaxPooling2D(3, strides=2, padding="valid", name="max")(y)
    y = layers.UpSampling2D((2, 3), name="upsample")(y)
    g = layers.GlobalAveragePooling2D(name="gap")(y)
    k = layers.GlobalAveragePooling2D(keepdims=True, name="gap_keep")(y)
    k = layers.Flatten(name="gap_flat")(k)
    out = layers.Concatenate(axis=1, name="both")([g, k])
    out = layers.Dense(2, activation="softmax", kernel_initializer=initializers.RandomUniform(-0.1, 0.1), name="out")(out)
    return keras.Model(x, out, name="conv_catalog"), ("mean_squared_error", ["mse"])


def lambda_model():
    return keras.Sequential([
        keras.Input((4,), name="x"),
        layers.Dense(8, name="features"),
        # Compiled under a fixed name: the serialized bytecode records its file name.
        layers.Lambda(eval(compile("lambda t: t * 2.0", "<lambda_model>", "eval")), name="double_it"),
        layers.Dense(1),
    ], name="lambda_model"), None


@keras.saving.register_keras_serializable(package="MyPackage")
class Scale(layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def custom_model():
    x = keras.Input((4,), name="x")
    y = Scale(3.0, name="scale")(x)
    return keras.Model(x, layers.Dense(1)(y), name="custom_model"), None


MODELS = [mlp, mnist_convnet, lstm, text_gru, two_inputs, w1_trunk, w8_mlp, conv_catalog, lambda_model, custom_model]
# Small enough to store weights and predictions: Kiln must compute what Keras computes.
CHECKED = {"lstm", "text_gru", "two_inputs", "conv_catalog"}


def shape_of(t):
    return [int(d) for d in t.shape[1:]]


def check(model):
    """Random weights (moving variances positive) and Keras's inference outputs for two
    random samples: {"inputs", "weights": {layer: {name: values}}, "outputs"}."""
    import numpy as np
    rng = np.random.default_rng(7)
    weights = {}
    for layer in model.layers:
        values = []
        for w in layer.weights:
            key = w.path.split("/")[-1]
            v = rng.uniform(0.5, 1.5, w.shape) if key == "moving_variance" else rng.normal(0, 0.3, w.shape)
            values.append(v.astype("float32"))
            weights.setdefault(layer.name, {})[key] = short(v.astype("float32"))
        if values:
            layer.set_weights(values)
    inputs = {}
    for t in model.inputs:
        shape = (2,) + tuple(t.shape[1:])
        if "int" in str(t.dtype):
            inputs[t.name] = rng.integers(0, 1000, shape).astype("int32")
        else:
            inputs[t.name] = rng.normal(0, 1, shape).astype("float32")
    names = [t.name for t in model.inputs]
    outputs = model.predict([inputs[n] for n in names] if len(names) > 1 else inputs[names[0]], verbose=0)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    ends = model.get_config().get("output_layers")
    output_names = [model.layers[-1].name] if ends is None else [ends[0]] if isinstance(ends[0], str) else [e[0] for e in ends]
    return {
        "inputs": {n: {"shape": list(v.shape), "values": short(v)} for n, v in inputs.items()},
        "weights": weights,
        "outputs": {n: {"shape": list(o.shape), "values": short(o)} for n, o in zip(output_names, outputs)},
    }


def short(values):
    """float32 values as their shortest decimal forms (exact as float32)."""
    import numpy as np
    return [int(x) if np.issubdtype(values.dtype, np.integer) else float(str(x)) for x in np.asarray(values).ravel()]


def describe(model, compile_args):
    if compile_args:
        loss, metrics = compile_args
        model.compile(optimizer="adam", loss=loss, metrics=metrics)
    layers_info = {}
    for layer in model.layers:
        out = layer.output
        shapes = [shape_of(t) for t in out] if isinstance(out, (list, tuple)) else shape_of(out)
        layers_info[layer.name] = {"output_shape": shapes, "count_params": int(layer.count_params())}
    return {
        "keras_version": keras.__version__,
        "keras": json.loads(model.to_json()),
        "count_params": int(model.count_params()),
        "layers": layers_info,
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for make in MODELS:
        model, compile_args = make()
        data = describe(model, compile_args)
        if make.__name__ in CHECKED:
            data["check"] = check(model)
        path = OUT / f"{make.__name__}.json"
        path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        print(f"{path.relative_to(ROOT)}: {data['count_params']} parameters")


main()
