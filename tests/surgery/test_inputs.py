"""set_input_channels: kernels adapted by each rule, Normalization statistics, refusals."""
import keras
import numpy as np
import pytest
from keras import layers as L

from keras_rewrite import surgery
from keras_rewrite.surgery import SurgeryError, UnsupportedLayerError


def tiny(norm="config"):
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3), name="img")
    x = L.Rescaling(1 / 255.0, name="scale")(inp)
    if norm == "config":
        x = L.Normalization(mean=[0.4] * 3, variance=[0.09] * 3, name="norm")(x)
    else:
        n = L.Normalization(name="norm")
        n.adapt(np.random.default_rng(0).uniform(size=(20, 8, 8, 3)).astype("float32"))
        x = n(x)
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.Conv2D(5, 3, name="conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(2, name="fc")(x), name="tiny")


def kernel(model):
    return model.get_layer("conv").get_weights()[0]


def test_sum_to_gray_equals_the_original_on_the_repeated_gray_image():
    model = tiny()
    gray = surgery.set_input_channels(model, 1, "sum")
    assert gray.input.shape == (None, 8, 8, 1)
    np.testing.assert_array_equal(kernel(gray), kernel(model).sum(axis=2, keepdims=True))
    np.testing.assert_array_equal(gray.get_layer("conv").get_weights()[1],
                                  model.get_layer("conv").get_weights()[1])
    np.testing.assert_array_equal(gray.get_layer("fc").get_weights()[0],
                                  model.get_layer("fc").get_weights()[0])
    g = np.random.default_rng(1).uniform(0, 255, size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(gray.predict(g, verbose=0),
                               model.predict(np.repeat(g, 3, axis=-1), verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert model.input.shape == (None, 8, 8, 3)  # original untouched


@pytest.mark.parametrize("n", [1, 2, 5])
@pytest.mark.parametrize("how", ["sum", "mean", "repeat", "zeros"])
def test_each_rule_gives_the_documented_kernel(how, n):
    model = tiny()
    k = kernel(model)
    new = kernel(surgery.set_input_channels(model, n, how))
    if how == "sum":
        want = np.repeat(k.sum(2, keepdims=True) / n, n, axis=2)
    elif how == "mean":
        want = np.repeat(k.sum(2, keepdims=True) / 3, n, axis=2)
    elif how == "repeat":
        want = k[:, :, [j % 3 for j in range(n)], :] * (3 / n)
    else:
        want = np.zeros(k.shape[:2] + (n, k.shape[3]), "float32")
        want[:, :, :min(n, 3)] = k[:, :, :min(n, 3)]
    assert new.shape == (3, 3, n, 5)
    np.testing.assert_allclose(new, want, rtol=1e-6, atol=1e-7)


def test_adapted_normalization_statistics_follow_the_channels():
    model = tiny("adapted")
    mean, var = (np.asarray(model.get_layer("norm").mean).ravel(),
                 np.asarray(model.get_layer("norm").variance).ravel())
    assert len(set(mean.round(6))) == 3  # per-channel, distinct
    new = surgery.set_input_channels(model, 4, "repeat").get_layer("norm")
    np.testing.assert_allclose(np.asarray(new.mean).ravel(), mean[[0, 1, 2, 0]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new.variance).ravel(), var[[0, 1, 2, 0]], rtol=1e-6)
    new = surgery.set_input_channels(model, 5, "zeros").get_layer("norm")
    np.testing.assert_allclose(np.asarray(new.mean).ravel(), [*mean, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new.variance).ravel(), [*var, 1, 1], rtol=1e-6)


def test_a_layer_that_cannot_take_it_is_named():
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(2, 1, name="a")(inp)
    model = keras.Model(inp, L.Concatenate(name="cat")([a, inp]))
    with pytest.raises(UnsupportedLayerError, match="'cat' \\(Concatenate\\)"):
        surgery.set_input_channels(model, 1)
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, L.DepthwiseConv2D(3, name="dw")(inp))
    with pytest.raises(UnsupportedLayerError, match="'dw' \\(DepthwiseConv2D\\)"):
        surgery.set_input_channels(model, 1)
    with pytest.raises(SurgeryError, match="how to be one of"):
        surgery.set_input_channels(tiny(), 1, "median")
    with pytest.raises(SurgeryError, match="positive int, received 0"):
        surgery.set_input_channels(tiny(), 0)


@pytest.mark.slow
def test_resnet50_to_gray_by_sum_equals_the_repeated_gray_image():
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))
    gray = surgery.set_input_channels(model, 1, "sum")
    assert gray.input.shape == (None, 64, 64, 1)
    g = np.random.default_rng(2).uniform(0, 1, size=(2, 64, 64, 1)).astype("float32")
    got = gray.predict(g, verbose=0)
    want = model.predict(np.repeat(g, 3, axis=-1), verbose=0)
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))


def test_dense_reading_the_input_directly_and_a_nested_reader_refused():
    keras.utils.set_random_seed(1)
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(3, name="d")(inp))
    new = surgery.set_input_channels(model, 2, "repeat")
    k = model.get_layer("d").get_weights()[0]
    np.testing.assert_allclose(new.get_layer("d").get_weights()[0], k[[0, 1]] * 2.0, rtol=1e-6)
    inner = keras.Model(inp, L.Dense(3, name="d2")(inp), name="inner")
    outer_in = keras.Input((4,))
    outer = keras.Model(outer_in, inner(outer_in))
    with pytest.raises(UnsupportedLayerError, match="'inner' \\(Functional\\)"):
        surgery.set_input_channels(outer, 1)


def test_per_channel_rescaling_is_refused_naming_it():
    inp = keras.Input((8, 8, 3))
    x = L.Rescaling([1.0, 2.0, 3.0], name="per_channel")(inp)
    model = keras.Model(inp, L.Conv2D(2, 1, name="c")(x))
    with pytest.raises(UnsupportedLayerError, match="'per_channel' \\(Rescaling\\).*scalar scale"):
        surgery.set_input_channels(model, 1)
