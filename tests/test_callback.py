"""RewriteCallback: non-structural passes applied in place when fit() starts, once."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.passes import L2Regularization, Pass, PassResult

RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 3)).astype("float32")
Y = RNG.standard_normal((8, 2)).astype("float32")
KERNEL = np.arange(6, dtype="float32").reshape(3, 2) / 10
BIAS = np.array([0.1, -0.2], "float32")


def dense_model():
    """Dense with known weights, MSE, SGD with learning rate 0: every batch has one loss."""
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layers.Dense(2, name="dense")(inputs))
    model.get_layer("dense").set_weights([KERNEL, BIAS])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    return model


def expected_loss(c):
    """MSE of the whole data + c * ||kernel||^2, in float64 from the known weights."""
    w, b = KERNEL.astype(np.float64), BIAS.astype(np.float64)
    data_loss = np.mean((X.astype(np.float64) @ w + b - Y) ** 2)
    return data_loss + c * np.sum(w ** 2)


class BatchLosses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def fit(model, callbacks, epochs=1):
    recorder = BatchLosses()
    model.fit(X, Y, batch_size=len(X), epochs=epochs, verbose=0,
              callbacks=[*callbacks, recorder])
    return recorder.losses


def test_the_first_batch_loss_counts_the_penalty():
    model = dense_model()
    callback = keras_rewrite.RewriteCallback([L2Regularization(0.01)])
    losses = fit(model, [callback])
    np.testing.assert_allclose(losses[0], expected_loss(0.01), rtol=1e-6)
    assert not np.isclose(losses[0], expected_loss(0.0), rtol=1e-6)  # the penalty is visible
    (result,) = callback.results
    assert result.changed_layers == ["dense"]


def test_a_train_function_traced_by_an_earlier_fit_is_rebuilt():
    model = dense_model()
    (plain,) = fit(model, [])
    np.testing.assert_allclose(plain, expected_loss(0.0), rtol=1e-6)
    (with_l2,) = fit(model, [keras_rewrite.RewriteCallback(["l2"])])  # default factor 1e-4
    np.testing.assert_allclose(with_l2, expected_loss(1e-4), rtol=1e-6)


def test_fit_twice_applies_once():
    model = dense_model()
    l2 = L2Regularization(0.01)
    calls = []
    original = l2.apply_in_place
    l2.apply_in_place = lambda m: calls.append(m) or original(m)
    callback = keras_rewrite.RewriteCallback([l2])
    first = fit(model, [callback], epochs=2)
    second = fit(model, [callback])
    np.testing.assert_allclose(first + second, [expected_loss(0.01)] * 3, rtol=1e-6)
    assert len(calls) == 1 and len(callback.results) == 1
    assert len(model.losses) == 1  # one regularized variable, not stacked


def test_regularizers_remain_after_fit_and_survive_save(tmp_path):
    model = dense_model()
    fit(model, [keras_rewrite.RewriteCallback([L2Regularization(0.01)])])
    config = model.get_layer("dense").get_config()["kernel_regularizer"]
    assert config["class_name"] == "L2" and config["config"]["l2"] == 0.01
    np.testing.assert_allclose(float(sum(model.losses)), 0.01 * np.sum(KERNEL ** 2), rtol=1e-6)
    model.save(tmp_path / "trained.keras")
    loaded = keras.models.load_model(tmp_path / "trained.keras")
    np.testing.assert_allclose(float(sum(loaded.losses)), 0.01 * np.sum(KERNEL ** 2), rtol=1e-6)


def test_spatial_dropout_in_fit_drops_whole_channels():
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = layers.Dropout(0.5, seed=5, name="drop")(x)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    x = np.abs(RNG.standard_normal((4, 6, 6, 3))).astype("float32") + 0.1
    before = model.predict(x, verbose=0)

    callback = keras_rewrite.RewriteCallback(["spatial_dropout"])
    model.fit(x, np.zeros((4, 8), "float32"), epochs=1, verbose=0, callbacks=[callback])
    assert callback.results[0].changes[0].action == "set_noise_shape"
    drop = model.get_layer("drop")
    assert drop.noise_shape == (None, 1, 1, 8)
    assert np.array_equal(model.predict(x, verbose=0), before)

    conv = np.asarray(model.get_layer("conv")(x))
    y = np.asarray(drop(conv, training=True)).reshape(4, -1, 8)
    zero = (y == 0) & (conv.reshape(4, -1, 8) != 0)
    dropped = zero.all(axis=1)
    assert np.all(dropped | ~zero.any(axis=1)), "a channel was partly dropped"
    assert dropped.any() and not dropped.all()


def test_structural_passes_are_refused_at_construction():
    def my_pass(graph):
        return PassResult("my_pass", modified=False)

    class Structural(Pass):
        def run(self, graph):
            return PassResult(self.name, modified=False)

    for passes in (["reorder"], [keras_rewrite.passes.ReorderBlocks()], [my_pass],
                   ["l2", Structural()]):
        with pytest.raises(keras_rewrite.PassError) as info:
            keras_rewrite.RewriteCallback(passes)
        message = str(info.value)
        assert "on_train_begin" in message and "keras_rewrite.rewrite(" in message, message
    assert "plain function" in str(pytest.raises(
        keras_rewrite.PassError, keras_rewrite.RewriteCallback, [my_pass]).value)


def test_a_non_structural_pass_needs_apply_in_place():
    class ConfigOnly(Pass):
        structural = False

        def run(self, graph):
            return PassResult(self.name, modified=False)

    with pytest.raises(keras_rewrite.PassError, match="apply_in_place"):
        keras_rewrite.RewriteCallback([ConfigOnly()])
    with pytest.raises(keras_rewrite.PassError, match="unknown pass name 'l3'"):
        keras_rewrite.RewriteCallback(["l3"])


def test_validation_loss_counts_the_penalty_after_an_earlier_evaluate():
    model = dense_model()
    np.testing.assert_allclose(model.evaluate(X, Y, verbose=0), expected_loss(0.0), rtol=1e-6)
    history = model.fit(X, Y, batch_size=len(X), epochs=1, verbose=0, validation_data=(X, Y),
                        callbacks=[keras_rewrite.RewriteCallback([L2Regularization(0.01)])])
    np.testing.assert_allclose(history.history["val_loss"][0], expected_loss(0.01), rtol=1e-6)
