"""FoldBatchNorm: BN folded into the layer before it; outputs equal up to float32 rounding."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from helpers import all_layers

TOL = dict(rtol=1e-4, atol=1e-4)


def trained_like(model, seed=0):
    """BN statistics and affine terms as training leaves them, negative gamma included."""
    rng = np.random.default_rng(seed)
    for layer in all_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            values = {"gamma": rng.uniform(-2, 2, n), "beta": rng.normal(size=n),
                      "moving_mean": rng.normal(size=n), "moving_variance": rng.uniform(0.2, 3, n)}
            for v in layer.weights:
                v.assign(values[v.name].astype("float32"))
    return model


def folded(model, x):
    result = keras_rewrite.rewrite_with_report(model, ["fold_batchnorm"])
    new = result.model
    want, got = model(x, training=False), new(x, training=False)
    error = float(np.max(np.abs(np.asarray(want) - np.asarray(got))))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), **TOL)
    return result, new, error


CASES = {
    "dense": (lambda: layers.Dense(4, use_bias=False), (6,)),
    "conv1d": (lambda: layers.Conv1D(4, 3), (8, 3)),
    "conv2d": (lambda: layers.Conv2D(4, 3), (8, 8, 3)),
    "conv2d_channels_first": (lambda: layers.Conv2D(4, 3, data_format="channels_first"),
                              (3, 8, 8)),
    "conv3d": (lambda: layers.Conv3D(4, 2), (4, 4, 4, 2)),
    "depthwise": (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2), (8, 8, 3)),
    "separable": (lambda: layers.SeparableConv2D(4, 3, depth_multiplier=2), (8, 8, 3)),
    "transpose": (lambda: layers.Conv2DTranspose(4, 3, strides=2), (5, 5, 3)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_layer_kind_folds_exactly(name, tmp_path):
    make, shape = CASES[name]
    inputs = keras.Input(shape)
    axis = 1 if name.endswith("channels_first") else -1
    x = layers.BatchNormalization(axis=axis, name="bn")(make()(inputs))
    model = trained_like(keras.Model(inputs, layers.ReLU()(x)))
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype("float32")
    result, new, _ = folded(model, x)
    assert not any(isinstance(l, layers.BatchNormalization) for l in new.layers)
    target = model.layers[1].name
    assert result.report.layer(target).transformed  # kernel/bias computed by the pass
    assert new.get_layer(target).get_config()["use_bias"] is True
    new.save(tmp_path / "folded.keras")  # the folded weights and use_bias survive a file
    again = keras.saving.load_model(tmp_path / "folded.keras")
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(new(x)))


def test_the_folded_kernel_and_bias_follow_the_formula():
    inputs = keras.Input((6,))
    model = trained_like(keras.Model(inputs, layers.BatchNormalization(epsilon=0.01, name="bn")(
        layers.Dense(4, name="d")(inputs))))
    for v in model.get_layer("d").weights:
        v.assign(np.random.default_rng(3).normal(size=v.shape).astype("float32"))
    new = keras_rewrite.rewrite(model, ["fold_batchnorm"])
    d, bn = model.get_layer("d"), model.get_layer("bn")
    gamma, beta, mean, var = (np.asarray(bn.gamma, "float64"), np.asarray(bn.beta, "float64"),
                              np.asarray(bn.moving_mean, "float64"),
                              np.asarray(bn.moving_variance, "float64"))
    scale = gamma / np.sqrt(var + 0.01)  # W' = W·γ/√(var+ε), b' = (b−μ)·γ/√(var+ε)+β
    kernel, bias = (np.asarray(w) for w in new.get_layer("d").weights)
    np.testing.assert_allclose(kernel, np.asarray(d.kernel, "float64") * scale, rtol=1e-6)
    np.testing.assert_allclose(bias, (np.asarray(d.bias, "float64") - mean) * scale + beta,
                               rtol=1e-5, atol=1e-6)
    assert (gamma < 0).any()  # the formula holds through negative gammas


def test_refusals_name_the_reason():
    inputs = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 3, activation="relu", name="fused")(inputs)
    a = layers.BatchNormalization(name="bn_after_relu")(a)
    b = layers.Conv2D(4, 3, name="conv_b")(inputs)
    b = layers.BatchNormalization(axis=1, name="bn_rows")(b)
    model = trained_like(keras.Model(inputs, [a, b]))
    changes = {c.layer: c for c in keras_rewrite.rewrite_with_report(
        model, ["fold_batchnorm"]).report.passes[0].changes}
    assert "fused activation='relu'" in changes["fused"].detail
    assert "not the channel axis" in changes["conv_b"].detail


@pytest.mark.slow
@pytest.mark.parametrize("build", [keras.applications.ResNet50, keras.applications.MobileNetV2,
                                   keras.applications.EfficientNetB0])
def test_applications_fold_with_float32_round_off(build, tmp_path):
    model = trained_like(build(weights=None, input_shape=(64, 64, 3), classes=10))
    x = np.random.default_rng(2).random((2, 64, 64, 3)).astype("float32")
    result, new, error = folded(model, x)
    new.save(tmp_path / "folded.keras")
    np.testing.assert_array_equal(
        np.asarray(keras.saving.load_model(tmp_path / "folded.keras")(x)), np.asarray(new(x)))
    before = sum(isinstance(l, layers.BatchNormalization) for l in model.layers)
    after = sum(isinstance(l, layers.BatchNormalization) for l in new.layers)
    assert after < before
    print(f"{model.name}: {before - after} of {before} BatchNormalization folded, "
          f"max |error| {error:.2e}")
