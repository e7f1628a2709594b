"""Shared assertions and tiny model builders for the test suite."""
from __future__ import annotations

import hashlib

import keras
import numpy as np
from keras import layers


def random_inputs(model, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    xs = []
    for t in model.inputs:
        shape = [batch if d is None else d for d in t.shape]
        if "int" in str(t.dtype):
            xs.append(rng.integers(0, 10, size=shape).astype(str(t.dtype)))
        else:
            xs.append(rng.standard_normal(shape).astype("float32"))
    return xs[0] if len(xs) == 1 else xs


def predict(model, x):
    out = model(x, training=False)
    return [np.asarray(o) for o in keras.tree.flatten(out)]


def assert_same_predictions(a, b, x):
    pa, pb = predict(a, x), predict(b, x)
    assert len(pa) == len(pb)
    for i, (u, v) in enumerate(zip(pa, pb)):
        assert u.shape == v.shape, f"output {i}: {u.shape} != {v.shape}"
        assert np.array_equal(u, v), f"output {i} differs: max |diff| {np.max(np.abs(u - v))}"


def all_layers(model):
    """Every layer, nested models' layers included, in order."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(all_layers(layer))
    return out


def assert_identical_copy(original, copy, x=None):
    """Same layer names, classes, configs and weights, and bit-identical predictions."""
    la, lb = all_layers(original), all_layers(copy)
    assert [l.name for l in la] == [l.name for l in lb]
    assert [type(l) for l in la] == [type(l) for l in lb]
    for a, b in zip(la, lb):
        if not isinstance(a, keras.Model) and type(a) is not layers.Lambda:
            assert a.get_config() == b.get_config(), f"config of {a.name} differs"
        wa, wb = a.weights, b.weights
        assert [w.shape for w in wa] == [w.shape for w in wb], a.name
        for u, v in zip(wa, wb):
            assert np.array_equal(np.asarray(u), np.asarray(v)), f"{a.name}/{u.name} differs"
    assert copy is not original
    if x is None:
        x = random_inputs(original)
    assert_same_predictions(original, copy, x)


def model_fingerprint(model):
    """A digest of everything rewrite must not change: weights, configs, inbound nodes."""
    h = hashlib.sha256()
    for layer in all_layers(model):
        h.update(layer.name.encode())
        if type(layer) is not layers.Lambda:
            h.update(repr(layer.get_config()).encode())
        h.update(str(len(layer._inbound_nodes)).encode())
        for w in layer.weights:
            h.update(np.asarray(w).tobytes())
            h.update(repr(getattr(w, "regularizer", None)).encode())
    return h.hexdigest()


def conv_chain(blocks, filters=4, size=8):
    """Conv-BN-ReLU-Dropout blocks, the deep-chain workload of the issue."""
    inputs = keras.Input((size, size, 3))
    x = inputs
    for _ in range(blocks):
        x = layers.Conv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Dropout(0.1)(x)
    return keras.Model(inputs, x)


def tiny_model(name="tiny"):
    """A two-layer model (Conv2D, Dropout) for the file tests of the library and the CLI."""
    inputs = keras.Input((4, 4, 3), name="x")
    x = layers.Conv2D(2, 1, name="conv")(inputs)
    return keras.Model(inputs, layers.Dropout(0.1, name="drop")(x), name=name)


# ------------------------------------------------------------- small graphs for edit tests


def edges_into(g, node_id):
    return sorted((u, d["slot"], d["tensor_index"]) for u, _, d in g.in_edges(node_id, data=True))


def split_model():
    """A layer with two outputs feeding a one-input chain: shows tensor_index being kept."""
    inputs = keras.Input((6,), name="x")
    a, b = keras.ops.split(inputs, 2, axis=-1)  # an op node with two outputs
    h = layers.Dense(3, name="d")(b)
    h = layers.Dropout(0.5, name="drop")(h)
    h = layers.Activation("relu", name="act")(h)
    out = layers.Concatenate(name="cat")([a, h])
    return keras.Model(inputs, [out, h])


def chain_model():
    inputs = keras.Input((8, 8, 3), name="x")
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.Dropout(0.3, name="drop")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    return keras.Model(inputs, layers.Dense(2, name="head")(x))


# ------------------------------------------------------- small models for diff and picture tests


def conv_block(name="m"):
    inputs = keras.Input((8, 8, 3), name="x")
    x = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = layers.Dropout(0.2, name="drop")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    return keras.Model(inputs, layers.Dense(2, name="head")(layers.Flatten(name="flat")(x)),
                       name=name)


def foldable(seed=0):
    """Conv (no bias) -> BN with non-trivial statistics -> ReLU -> Dense."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((8, 8, 3), name="x")
    x = layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    model = keras.Model(inputs, layers.Dense(2, name="head")(layers.Flatten(name="flat")(x)))
    model.get_layer("bn").set_weights([rng.uniform(0.5, 2.0, 4).astype("float32")
                                       for _ in range(4)])
    return model
