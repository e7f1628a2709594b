"""SpatialDropout: Dropout on feature maps drops whole channels; inference stays identical."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from helpers import assert_same_predictions, model_fingerprint, random_inputs
from keras_rewrite.passes import SpatialDropout, run_passes
from seed_models import build_cnn


def rewrite(model):
    result = keras_rewrite.rewrite_with_report(model, [SpatialDropout()])
    return result.model, result.report.passes[0]


def positive(shape, seed=0):
    # Strictly positive inputs: a zero in the output can only come from dropout.
    return (np.abs(np.random.default_rng(seed).standard_normal(shape)) + 0.1).astype("float32")


def assert_whole_channels(y, channel_axis=-1):
    """Per sample and channel: all zero or all nonzero, and both kinds occur."""
    y = np.moveaxis(np.asarray(y), channel_axis, -1)
    flat = y.reshape(y.shape[0], -1, y.shape[-1])  # (batch, positions, channels)
    zero = flat == 0
    assert np.all(zero.all(axis=1) | ~zero.any(axis=1)), "a channel was partly dropped"
    dropped = zero.all(axis=1)
    assert dropped.any() and not dropped.all(), "expected some channels dropped, some kept"


def test_seed_cnn_pooled_dropouts_become_spatial_the_dense_one_does_not():
    model = build_cnn(compile=False)
    before = model_fingerprint(model)
    new, result = rewrite(model)

    assert model_fingerprint(model) == before
    dropouts = [l for l in new.layers if isinstance(l, layers.Dropout)]
    assert [type(l) for l in dropouts] == [layers.SpatialDropout2D, layers.SpatialDropout2D,
                                           layers.Dropout]
    assert [l.rate for l in dropouts] == [0.2, 0.2, 0.4]
    assert [l.name for l in dropouts] == [l.name for l in model.layers
                                          if isinstance(l, layers.Dropout)]
    assert dropouts[0].data_format == "channels_last"
    assert result.modified and result.outputs_unchanged
    assert [c.action for c in result.changes] == ["replaced", "replaced", "skipped"]
    assert "-> SpatialDropout2D" in result.changes[0].detail
    assert "rank 2" in result.changes[2].detail and "Flatten or Dense" in result.changes[2].detail
    assert_same_predictions(model, new, random_inputs(model))

    in_place = SpatialDropout().apply_in_place(model)
    assert [c.action for c in in_place.changes] == ["set_noise_shape", "set_noise_shape",
                                                    "skipped"]
    assert [l.noise_shape for l in model.layers if isinstance(l, layers.Dropout)] == \
        [(None, 1, 1, 32), (None, 1, 1, 64), None]


def test_training_mode_zeroes_whole_channels():
    inputs = keras.Input((6, 6, 16))
    x = layers.Activation("linear", name="linear")(inputs)
    model = keras.Model(inputs, layers.Dropout(0.5, seed=3, name="drop")(x))
    new, _ = rewrite(model)
    x = positive((4, 6, 6, 16))
    assert type(new.get_layer("drop")) is layers.SpatialDropout2D
    assert new.get_layer("drop").seed == 3
    assert_whole_channels(new(x, training=True))
    with pytest.raises(AssertionError, match="partly dropped"):  # the check can fail
        assert_whole_channels(model(x, training=True))
    assert np.array_equal(new(x, training=False), x)


def test_in_place_noise_shape_gives_the_same_masks_as_the_rewrite():
    inputs = keras.Input((5, 5, 8))
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = layers.Dropout(0.4, seed=7, name="drop")(x)
    x = layers.Conv2D(6, 1, name="conv_1")(x)
    model = keras.Model(inputs, layers.Dropout(0.3, seed=11, name="drop_1")(x))
    rewritten, _ = rewrite(model)  # before the in-place change: rewrite leaves model alone

    result = SpatialDropout().apply_in_place(model)
    assert [c.action for c in result.changes] == ["set_noise_shape", "set_noise_shape"]
    assert "class stays Dropout" in result.changes[0].detail
    assert type(model.get_layer("drop")) is layers.Dropout
    assert model.get_layer("drop").noise_shape == (None, 1, 1, 8)
    assert model.get_layer("drop").get_config()["noise_shape"] == (None, 1, 1, 8)
    x = random_inputs(model, batch=3)
    # Fresh seed generators with the same seeds: the very same masks.
    assert np.array_equal(model(x, training=True), rewritten(x, training=True))
    assert_same_predictions(model, rewritten, x)

    again = SpatialDropout().apply_in_place(model)
    assert not again.modified
    assert "already drops whole channels" in again.changes[0].detail
    # ... and a rewrite of the in-place model converts the channel-wise noise_shape.
    converted, result = rewrite(model)
    assert type(converted.get_layer("drop")) is layers.SpatialDropout2D
    assert "already drops whole channels" in result.changes[0].detail


def test_own_noise_shape_is_left_alone():
    # EfficientNet's drop-connect: one draw per sample.
    inputs = keras.Input((4, 4, 8))
    x = layers.Dropout(0.2, noise_shape=(None, 1, 1, 1), name="drop_connect")(inputs)
    model = keras.Model(inputs, layers.Add()([x, inputs]))
    new, result = rewrite(model)
    assert type(new.get_layer("drop_connect")) is layers.Dropout
    assert not result.modified
    (change,) = result.changes
    assert change.action == "skipped"
    assert "own noise_shape=(None, 1, 1, 1)" in change.detail
    assert not SpatialDropout().apply_in_place(model).modified
    assert model.get_layer("drop_connect").noise_shape == (None, 1, 1, 1)


def test_1d_and_3d():
    inputs = keras.Input((10, 6))
    x = layers.Conv1D(6, 3, padding="same", name="conv1d")(inputs)
    model_1d = keras.Model(inputs, layers.Dropout(0.5, seed=1, name="drop")(x))
    new_1d, result = rewrite(model_1d)
    assert type(new_1d.get_layer("drop")) is layers.SpatialDropout1D
    assert "SpatialDropout1D" in result.changes[0].detail
    x = random_inputs(model_1d, batch=4)
    assert_same_predictions(model_1d, new_1d, x)
    y = new_1d(x, training=True)
    conv = new_1d.get_layer("conv1d")(x)
    assert_whole_channels(np.where(np.asarray(conv) == 0, 1.0, y))

    inputs = keras.Input((4, 4, 4, 5))
    x = layers.Conv3D(5, 3, padding="same")(inputs)
    model_3d = keras.Model(inputs, layers.Dropout(0.5, seed=2, name="drop")(x))
    new_3d, _ = rewrite(model_3d)
    assert type(new_3d.get_layer("drop")) is layers.SpatialDropout3D
    assert new_3d.get_layer("drop").data_format == "channels_last"
    assert_same_predictions(model_3d, new_3d, random_inputs(model_3d))


def test_channels_first_is_taken_from_upstream():
    inputs = keras.Input((6, 5, 5))
    x = layers.MaxPooling2D(1, data_format="channels_first", name="pool")(inputs)
    x = layers.BatchNormalization(axis=1, name="bn")(x)
    x = layers.Activation("relu")(x)
    model = keras.Model(inputs, layers.Dropout(0.5, seed=4, name="drop")(x))
    new, result = rewrite(model)
    drop = new.get_layer("drop")
    assert type(drop) is layers.SpatialDropout2D and drop.data_format == "channels_first"
    assert "data_format channels_first from 'pool'" in result.changes[0].detail
    assert_whole_channels(drop(positive((3, 6, 5, 5)), training=True), channel_axis=1)

    SpatialDropout().apply_in_place(model)
    assert model.get_layer("drop").noise_shape == (None, 6, 1, 1)


def test_channels_first_1d_is_left_alone():
    inputs = keras.Input((4, 10))
    x = layers.MaxPooling1D(1, data_format="channels_first")(inputs)
    model = keras.Model(inputs, layers.Dropout(0.5, name="drop")(x))
    _, result = rewrite(model)
    assert result.changes[0].action == "skipped"
    assert "SpatialDropout1D only drops channels_last" in result.changes[0].detail


def test_unknown_rank_is_left_alone():
    inputs = keras.Input((4, 4, 3))
    x = layers.Conv2D(3, 1, name="conv")(inputs)
    model = keras.Model(inputs, layers.Dropout(0.5, name="drop")(x))
    graph = keras_rewrite.to_graph(model)
    graph.nodes["conv"]["output_shapes"] = None  # as for a node a pass created
    (result,) = run_passes(graph, [SpatialDropout()])
    assert result.changes[0].action == "skipped"
    assert "rank unknown" in result.changes[0].detail
    assert graph.nodes["drop"]["spec"].cls is layers.Dropout


def test_running_twice_is_running_once_and_the_graph_stays_valid():
    model = build_cnn(compile=False)
    graph = keras_rewrite.to_graph(model)
    first, second = run_passes(graph, [SpatialDropout(), SpatialDropout()])
    keras_rewrite.validate(graph)
    dropouts = [l.name for l in model.layers if isinstance(l, layers.Dropout)]
    assert first.changed_layers == dropouts[:2]
    assert not second.modified and second.changed_layers == []
    assert [c.action for c in second.changes] == ["skipped"]  # only the rank-2 Dropout


def test_shared_and_nested_dropout():
    inner_in = keras.Input((4, 4, 2))
    inner_x = layers.Conv2D(2, 1, name="inner_conv")(inner_in)
    inner = keras.Model(inner_in, layers.Dropout(0.5, name="inner_drop")(inner_x), name="block")
    shared = layers.Dropout(0.5, name="shared_drop")
    inputs = keras.Input((4, 4, 2))
    x = shared(inner(inputs))
    x = shared(layers.Conv2D(2, 1)(x))
    model = keras.Model(inputs, x)
    graph = keras_rewrite.to_graph(model)
    (result,) = run_passes(graph, [SpatialDropout()])
    assert sorted(result.changed_layers) == ["inner_drop", "shared_drop"]
    assert graph.nodes["shared_drop"]["spec"] is graph.nodes["shared_drop:1"]["spec"]
    new = keras_rewrite.to_model(graph)
    assert type(new.get_layer("block").get_layer("inner_drop")) is layers.SpatialDropout2D
    assert type(new.get_layer("shared_drop")) is layers.SpatialDropout2D
    assert_same_predictions(model, new, random_inputs(model))

    # Shared across a rank-4 and a rank-2 input: no single class fits both calls.
    shared = layers.Dropout(0.5, name="mixed")
    inputs = keras.Input((4, 4, 2))
    y = shared(layers.Flatten()(shared(inputs)))
    _, result = rewrite(keras.Model(inputs, y))
    assert result.changes[0].action == "skipped"
    assert "shared layer whose calls need different layers" in result.changes[0].detail
    assert "call 'mixed:1': input has rank 2" in result.changes[0].detail


def test_spatial_dropout_already_there_is_not_touched():
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, layers.SpatialDropout2D(0.5)(inputs))
    _, result = rewrite(model)
    assert result.changes == [] and not result.modified
