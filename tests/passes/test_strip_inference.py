"""StripInference: training-only layers removed, inference outputs bit-identical."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from helpers import all_layers, assert_same_predictions, random_inputs
from keras_rewrite.passes import StripInference

KINDS = (layers.Dropout, layers.SpatialDropout2D, layers.GaussianNoise, layers.GaussianDropout,
         layers.AlphaDropout, layers.ActivityRegularization)


def every_kind():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same")(inputs)
    x = layers.SpatialDropout2D(0.2)(x)
    x = layers.GaussianNoise(0.1)(x)
    inner = keras.Sequential([keras.Input((8, 8, 4)), layers.GaussianDropout(0.2),
                              layers.Conv2D(4, 1)], name="inner")
    x = inner(x)
    x = layers.GlobalAveragePooling2D()(x)
    shared = layers.Dropout(0.5, name="shared_drop")
    a, b = shared(layers.Dense(4)(x)), shared(layers.Dense(4)(x))
    x = layers.AlphaDropout(0.1)(layers.Add()([a, b]))
    x = layers.ActivityRegularization(l2=0.1)(x)
    return keras.Model(inputs, layers.Dropout(0.3, name="last")(layers.Dense(2)(x)))


def training_only(model):
    return [layer.name for layer in all_layers(model) if isinstance(layer, KINDS)]


def test_every_training_only_layer_is_removed_and_outputs_stay_identical(tmp_path):
    model = every_kind()
    result = keras_rewrite.rewrite_with_report(model, ["strip_inference"])
    new = result.model
    assert training_only(new) == [] and len(training_only(model)) == 7
    removed = [c.layer for c in result.report.passes[0].changes if c.action == "removed"]
    assert len(removed) == 8  # the shared Dropout at both of its calls
    assert result.report.outputs_unchanged is True
    x = random_inputs(model, batch=3)
    assert_same_predictions(model, new, x)
    new.save(tmp_path / "m.keras")
    assert_same_predictions(model, keras.saving.load_model(tmp_path / "m.keras"), x)


def test_running_it_twice_is_a_no_op():
    new = keras_rewrite.rewrite(every_kind(), [StripInference()])
    result = keras_rewrite.rewrite_with_report(new, [StripInference()])
    assert result.report.passes[0].modified is False


@pytest.mark.slow
def test_efficientnet_loses_its_dropout_and_drop_connect_and_keeps_its_outputs():
    model = keras.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3), classes=10)
    new = keras_rewrite.rewrite(model, ["strip_inference"])
    assert training_only(model) and training_only(new) == []
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
    assert_same_predictions(model, new, x)
