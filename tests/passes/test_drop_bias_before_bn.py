"""DropBiasBeforeBN: the bias before BatchNormalization goes into its moving mean; outputs equal
up to float32 rounding, in inference and in training; weights checked against numpy."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.passes.drop_bias_before_bn import DropBiasBeforeBN

TOL = dict(rtol=1e-5, atol=1e-5)


def randomized(model, seed=0):
    """Biases, BN statistics and affine terms as training leaves them (not zeros and ones)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for v in layer.weights:
            if v.name == "moving_variance":
                v.assign(rng.uniform(0.2, 3, v.shape).astype("float32"))
            elif v.name in ("bias", "moving_mean", "beta"):
                v.assign(rng.normal(0, 2, v.shape).astype("float32"))
            elif v.name == "gamma":
                v.assign(rng.uniform(-2, 2, v.shape).astype("float32"))
    return model


CASES = {
    "dense": (lambda: layers.Dense(4, name="layer"), (6,), -1),
    "conv1d": (lambda: layers.Conv1D(4, 3, name="layer"), (8, 3), -1),
    "conv2d": (lambda: layers.Conv2D(4, 3, name="layer"), (8, 8, 3), -1),
    "conv2d_channels_first": (lambda: layers.Conv2D(4, 3, data_format="channels_first",
                                                    name="layer"), (3, 8, 8), 1),
    "conv3d": (lambda: layers.Conv3D(4, 2, name="layer"), (4, 4, 4, 2), -1),
    "depthwise": (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, name="layer"),
                  (8, 8, 3), -1),
    "separable": (lambda: layers.SeparableConv2D(4, 3, name="layer"), (8, 8, 3), -1),
    "transpose": (lambda: layers.Conv2DTranspose(4, 3, strides=2, name="layer"), (5, 5, 3), -1),
}


def bias_bn_model(name):
    make, shape, axis = CASES[name]
    inputs = keras.Input(shape)
    x = layers.BatchNormalization(axis=axis, name="bn")(make()(inputs))
    model = randomized(keras.Model(inputs, layers.ReLU(name="relu")(x)))
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype("float32")
    return model, x


@pytest.mark.parametrize("name", list(CASES))
def test_every_layer_kind_drops_its_bias_exactly(name):
    model, x = bias_bn_model(name)
    result = keras_rewrite.rewrite_with_report(model, ["drop_bias_before_bn"])
    new = result.model
    (change,) = result.report.passes[0].changes
    assert change.action == "replaced" and change.layer == "layer"

    # Weights against numpy: the kernel(s) as they were, no bias, moving mean minus bias.
    old_layer, new_layer = model.get_layer("layer"), new.get_layer("layer")
    assert new_layer.get_config()["use_bias"] is False and new_layer.bias is None
    kernels = [w for w in old_layer.weights if w.name != "bias"]
    assert [w.name for w in new_layer.weights] == [w.name for w in kernels]
    for old, fresh in zip(kernels, new_layer.weights):
        assert np.array_equal(np.asarray(old), np.asarray(fresh))
    old_bn, new_bn = model.get_layer("bn"), new.get_layer("bn")
    expected_mean = np.asarray(old_bn.moving_mean) - np.asarray(old_layer.bias)
    assert np.array_equal(np.asarray(new_bn.moving_mean), expected_mean)
    for attr in ("gamma", "beta", "moving_variance"):
        assert np.array_equal(np.asarray(getattr(old_bn, attr)), np.asarray(getattr(new_bn, attr)))
    assert result.report.layer("bn").transformed == ["moving_mean"]
    assert [n for n, _ in result.report.layer("layer").dropped] == ["bias"]

    # Inference: the same up to float32 rounding. Training (batch statistics): the bias
    # cancels, so it never mattered there either.
    np.testing.assert_allclose(np.asarray(new(x, training=False)),
                               np.asarray(model(x, training=False)), **TOL)
    np.testing.assert_allclose(np.asarray(new(x, training=True)),
                               np.asarray(model(x, training=True)), **TOL)


def test_refusals_name_the_reason_and_change_nothing():
    inputs = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 3, activation="relu", name="fused")(inputs)
    a = layers.BatchNormalization(name="bn_a")(a)
    b = layers.Conv2D(4, 3, name="conv_rows")(inputs)
    b = layers.BatchNormalization(axis=1, name="bn_rows")(b)
    c = layers.Conv2D(4, 3, name="conv_fan")(inputs)
    c2 = layers.BatchNormalization(name="bn_fan")(c)
    model = randomized(keras.Model(inputs, [a, b, layers.Add()([c, c2])]))
    dry = DropBiasBeforeBN().dry_run(model)
    assert dry.matches == []
    reasons = {m.names[0]: m.reason for m in dry.refusals}
    assert "fused activation='relu'" in reasons["fused"]
    assert "normalizes axis 1, not the channel axis" in reasons["conv_rows"]
    assert "fan-out" in reasons["conv_fan"]
    result = keras_rewrite.rewrite_with_report(model, ["drop_bias_before_bn"])
    assert result.report.passes[0].modified is False
    assert all(l.get_config().get("use_bias", True) for l in result.model.layers
               if isinstance(l, layers.Conv2D))


def test_no_bias_no_match_and_running_twice_changes_nothing_more():
    model, x = bias_bn_model("conv2d")
    once = keras_rewrite.rewrite(model, ["drop_bias_before_bn"])
    again = keras_rewrite.rewrite_with_report(once, ["drop_bias_before_bn"])
    assert again.report.passes[0].modified is False and again.report.passes[0].changes == []
    np.testing.assert_array_equal(np.asarray(again.model(x)), np.asarray(once(x)))


def test_declared_in_the_registry():
    from keras_rewrite.passes import registry

    cls = registry.passes()["drop_bias_before_bn"]
    assert cls is DropBiasBeforeBN and cls.structural is True
    assert cls.outputs_unchanged is None and DropBiasBeforeBN().get_config() == {}


@pytest.mark.slow
def test_resnet50_biases_before_bn():
    """ResNet50's convolutions all have a bias and feed BatchNormalization."""
    model = randomized(keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3),
                                                   classes=10, classifier_activation=None))
    result = keras_rewrite.rewrite_with_report(model, ["drop_bias_before_bn"])
    changed = result.report.passes[0].changed_layers
    assert len(changed) == 53  # every Conv2D of ResNet50 is followed by its BN
    x = np.random.default_rng(2).standard_normal((2, 64, 64, 3)).astype("float32")
    want, got = np.asarray(model(x, training=False)), np.asarray(result.model(x, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
    assert model.count_params() - result.model.count_params() == sum(
        model.get_layer(n).bias.shape[0] for n in changed)
