"""replace_block: weights outside the block kept, prediction equals a hand-built model."""
import keras
import numpy as np
import pytest
from keras import layers as L

from keras_rewrite import surgery
from keras_rewrite.surgery import SurgeryError, SurgeryShapeError


def cnn():
    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 10, 3), name="img")
    x = L.Conv2D(4, 3, name="c1")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.Conv2D(5, 3, name="c2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(2, name="fc")(x), name="cnn")


def block():
    keras.utils.set_random_seed(9)
    inp = keras.Input((8, 8, 4))
    y = L.Conv2D(4, 1, name="pw")(inp)
    return keras.Model(inp, L.Activation("tanh", name="tanh")(y), name="blk")


def x_data():
    return np.random.default_rng(3).normal(size=(3, 10, 10, 3)).astype("float32")


def hand(model, new):
    inp = keras.Input((10, 10, 3))
    y = new(model.get_layer("c1")(inp))
    y = model.get_layer("fc")(model.get_layer("gap")(model.get_layer("c2")(y)))
    return keras.Model(inp, y)


@pytest.mark.parametrize("kind", ["layer", "model"])
def test_replace_block_equals_the_hand_built_model(kind):
    model = cnn()
    new = L.Activation("sigmoid", name="sig") if kind == "layer" else block()
    out = surgery.replace_block(model, "bn", "relu", new)
    names = {layer.name for layer in out.layers}
    assert "bn" not in names and "relu" not in names and new.name in names
    for name in ("c1", "c2", "fc"):
        for u, v in zip(model.get_layer(name).get_weights(), out.get_layer(name).get_weights()):
            np.testing.assert_array_equal(u, v)
    if kind == "model":
        for u, v in zip(new.get_weights(), out.get_layer("blk").get_weights()):
            np.testing.assert_array_equal(u, v)
    x = x_data()
    np.testing.assert_array_equal(out.predict(x, verbose=0), hand(model, new).predict(x, verbose=0))
    assert "bn" in {layer.name for layer in model.layers}  # original untouched


def test_replace_block_inside_a_nested_model():
    inner = cnn()
    inp = keras.Input((10, 10, 3))
    outer = keras.Model(inp, L.Dense(1, name="top")(inner(inp)), name="outer")
    out = surgery.replace_block(outer, "cnn/bn", "relu", L.ReLU(name="only_relu"))
    assert "only_relu" in {layer.name for layer in out.get_layer("cnn").layers}
    x = x_data()
    want = outer.get_layer("top")(hand(inner, L.ReLU())(x))
    np.testing.assert_array_equal(out.predict(x, verbose=0), np.asarray(want))


def test_refusals_name_the_layers():
    model = cnn()
    with pytest.raises(SurgeryError, match="expected a linear run from 'relu' to 'bn'"):
        surgery.replace_block(model, "relu", "bn", L.ReLU())
    with pytest.raises(SurgeryShapeError, match="consumer 'c2'"):
        surgery.replace_block(model, "bn", "relu", L.Conv2D(7, 1, name="wide"))
    inp = keras.Input((4,))
    a = L.Dense(4, name="a")(inp)
    b = L.Dense(4, name="b")(a)
    res = keras.Model(inp, L.Add(name="add")([a, b]))
    with pytest.raises(SurgeryError, match="'a'"):
        surgery.replace_block(res, "a", "b", L.Dense(4))
