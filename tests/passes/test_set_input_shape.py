"""SetInputShape: a new input shape, every weight carried, precise errors where it cannot be."""
import json

import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from helpers import assert_same_predictions, predict
from keras_rewrite import passes, to_graph, validate
from keras_rewrite.errors import PassError, RebuildError, ShapeMismatchError

RNG = np.random.default_rng(0)


def images(h, w, c=3, batch=2):
    return RNG.standard_normal((batch, h, w, c)).astype("float32")


def cnn(shape=(8, 8, 3)):
    """Conv -> BN -> ReLU -> GAP -> Dense, with trained-like BN statistics."""
    inputs = keras.Input(shape, name="img")
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, layers.Dense(3, name="head")(x), name="cnn")
    bn = model.get_layer("bn")
    bn.moving_mean.assign(RNG.standard_normal(4).astype("float32"))
    bn.moving_variance.assign(RNG.uniform(0.5, 2, 4).astype("float32"))
    return model


def same_weights(a, b):
    assert len(a.weights) == len(b.weights)
    for u, v in zip(a.weights, b.weights):
        assert u.shape == v.shape and np.array_equal(np.asarray(u), np.asarray(v)), u.path


def reloaded(model, tmp_path, name="m.keras"):
    path = tmp_path / name
    model.save(path)
    return keras.models.load_model(path)


@pytest.mark.parametrize("shape", [(None, None, 3), (12, 10, 3)])
def test_a_conv_model_takes_the_new_shape_with_every_weight_and_the_same_function(shape,
                                                                                   tmp_path):
    model = cnn()
    result = keras_rewrite.rewrite_with_report(model, [passes.SetInputShape(shape)])
    new = result.model
    assert tuple(new.inputs[0].shape) == (None, *shape)
    assert result.report.weights_carried == len(model.weights) and result.report.weights_new == 0
    same_weights(model, new)
    # The same function: an independent model built for 12x10 with the same weights.
    twin = cnn((12, 10, 3))
    twin.set_weights(model.get_weights())
    x = images(12, 10)
    assert_same_predictions(twin, new, x)
    if shape[0] is None:  # and on the original's own size, the original's outputs
        assert_same_predictions(model, new, images(8, 8))
    (change,) = result.report.passes[0].changes
    assert (change.layer, change.action) == ("img", "set_input_shape")
    assert change.detail == f"(8, 8, 3) -> {shape}"
    assert result.report.outputs_unchanged is True
    back = reloaded(new, tmp_path)
    assert tuple(back.inputs[0].shape) == (None, *shape)
    assert_same_predictions(new, back, x)


def test_downstream_shapes_become_unknown_and_the_graph_asks_for_every_weight():
    graph = to_graph(cnn())
    result = passes.SetInputShape((None, None, 3))(graph)
    validate(graph)
    assert result.modified
    assert graph.nodes["img"]["output_shapes"] == [(None, None, None, 3)]
    assert graph.nodes["img"]["spec"].config["batch_shape"] == (None, None, None, 3)
    for node in ("conv", "bn", "relu", "gap", "head", "output:0"):
        assert graph.nodes[node]["output_shapes"] is None, node
    assert graph.graph["weights_must_fit"] == ["SetInputShape"]


def test_the_same_shape_changes_nothing():
    model = cnn()
    result = keras_rewrite.rewrite_with_report(model, [passes.SetInputShape([8, 8, 3])])
    assert not result.report.passes[0].modified and result.report.passes[0].changes == []
    assert_same_predictions(model, result.model, images(8, 8))


def flatten_dense():
    inputs = keras.Input((8, 8, 3), name="img")
    x = layers.Conv2D(4, 3, name="conv")(inputs)  # valid padding: 6x6x4 = 144
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, layers.Dense(2, name="dense")(x))


def test_flatten_then_dense_names_the_dense_layer_and_the_shape_it_would_receive():
    with pytest.raises(ShapeMismatchError) as info:
        keras_rewrite.rewrite(flatten_dense(), [passes.SetInputShape((10, 10, 3))])
    message = str(info.value)
    assert ("layer 'dense' (Dense) cannot take input shape (None, 256) from 'flatten': "
            "expected (None, 144)") in message
    assert "kernel: shape changed: original (144, 2), now (256, 2)" in message
    assert "SetInputShape carries every weight" in message
    assert info.value.layer == "dense"
    assert info.value.received == [(None, 256)] and info.value.expected == [(None, 144)]


def test_a_sequential_flatten_then_dense_is_refused_the_same_way():
    model = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3, name="conv"),
                              layers.Flatten(name="flat"), layers.Dense(2, name="out")])
    with pytest.raises(ShapeMismatchError,
                       match=r"layer 'out' \(Dense\) cannot take input shape \(None, 256\) "
                             r"from 'flat': expected \(None, 144\)"):
        keras_rewrite.rewrite(model, [passes.SetInputShape((10, 10, 3))])


@pytest.mark.parametrize("sequential", [False, True])
def test_a_fixed_reshape_names_itself_the_shape_it_would_receive_and_the_original(sequential):
    stack = [layers.Conv2D(4, 3, name="conv"), layers.Reshape((144,), name="reshape"),
             layers.Dense(2, name="dense")]
    if sequential:
        model = keras.Sequential([keras.Input((8, 8, 3)), *stack])
    else:
        inputs = keras.Input((8, 8, 3))
        x = inputs
        for layer in stack:
            x = layer(x)
        model = keras.Model(inputs, x)
    with pytest.raises(RebuildError) as info:
        keras_rewrite.rewrite(model, [passes.SetInputShape((10, 10, 3))])
    message = str(info.value)
    assert ("layer 'reshape' (Reshape) cannot take input shape (None, 8, 8, 4) from 'conv': "
            "expected (None, 6, 6, 4)") in message
    assert "total size of the tensor must be unchanged" in message
    assert "\x1b[" not in message and "Arguments received" not in message


def test_a_rank_change_is_an_error_naming_the_input():
    with pytest.raises(PassError, match=r"input 'img' has rank 3 \(shape \(8, 8, 3\), batch "
                                        r"excluded\).*Received: \(8, 8\)"):
        keras_rewrite.rewrite(cnn(), [passes.SetInputShape((8, 8))])


def two_inputs():
    a = keras.Input((5, 3), name="seq")
    b = keras.Input((4,), name="meta")
    x = layers.GlobalAveragePooling1D()(layers.Conv1D(4, 2, name="c1")(a))
    x = layers.Concatenate()([x, b])
    return keras.Model({"seq": a, "meta": b}, layers.Dense(1, name="out")(x))


def test_several_inputs_take_a_dict_and_a_bare_shape_is_refused_naming_them(tmp_path):
    model = two_inputs()
    with pytest.raises(PassError, match=r"has 2 inputs \('meta', 'seq'\); expected shape "
                                        r"as a dict \{input name: shape\}"):
        keras_rewrite.rewrite(model, [passes.SetInputShape((None, 3))])
    with pytest.raises(PassError, match=r"no input named 'sequence'; expected names among "
                                        r"its inputs: .*'seq'"):
        keras_rewrite.rewrite(model, [passes.SetInputShape({"sequence": (None, 3)})])
    new = keras_rewrite.rewrite(model, [passes.SetInputShape({"seq": (None, 3)})])
    shapes = {t.name: tuple(t.shape) for t in new.inputs}
    assert shapes == {"seq": (None, None, 3), "meta": (None, 4)}
    same_weights(model, new)
    x = {"seq": RNG.standard_normal((2, 9, 3)).astype("float32"),
         "meta": RNG.standard_normal((2, 4)).astype("float32")}
    twin_a = keras.Input((9, 3), name="seq")
    twin_b = keras.Input((4,), name="meta")
    y = layers.GlobalAveragePooling1D()(layers.Conv1D(4, 2, name="c1")(twin_a))
    twin = keras.Model({"seq": twin_a, "meta": twin_b},
                       layers.Dense(1, name="out")(layers.Concatenate()([y, twin_b])))
    twin.set_weights(model.get_weights())
    assert_same_predictions(twin, new, x)
    assert_same_predictions(new, reloaded(new, tmp_path), x)


def test_a_nested_model_fed_from_the_input_gets_the_new_shape_too(tmp_path):
    base = cnn()
    inputs = keras.Input((8, 8, 3), name="outer")
    x = layers.Rescaling(0.5, name="scale")(inputs)
    model = keras.Model(inputs, layers.Dense(1, name="top")(base(x)))
    result = keras_rewrite.rewrite_with_report(model, [passes.SetInputShape((None, None, 3))])
    new = result.model
    details = [(c.layer, c.detail) for c in result.report.passes[0].changes]
    assert details == [("outer", "(8, 8, 3) -> (None, None, 3)"),
                       ("img", "(8, 8, 3) -> (None, None, 3) of nested model 'cnn'")]
    assert tuple(new.get_layer("cnn").inputs[0].shape) == (None, None, None, 3)
    same_weights(model, new)
    x = images(12, 16)
    h = x * np.float32(0.5)  # the original layers, one by one, on the new size
    for name in ("conv", "bn", "relu", "gap", "head"):
        h = base.get_layer(name)(h, training=False) if name == "bn" else base.get_layer(name)(h)
    np.testing.assert_array_equal(predict(new, x)[0], np.asarray(model.get_layer("top")(h)))
    assert_same_predictions(new, reloaded(new, tmp_path), x)


def test_a_sequential_model_takes_a_new_shape():
    model = keras.Sequential([keras.Input((6, 2)), layers.LSTM(3, name="lstm"),
                              layers.Dense(1, name="d")])
    new = keras_rewrite.rewrite(model, [passes.SetInputShape((None, 2))])
    assert isinstance(new, keras.Sequential) and tuple(new.inputs[0].shape) == (None, None, 2)
    same_weights(model, new)
    assert_same_predictions(model, new, RNG.standard_normal((2, 6, 2)).astype("float32"))


@pytest.mark.parametrize("bad", [(0, 3), (-1, 3), (2.5, 3), ("x", 3), (True, 3), (), "8,8,3",
                                 8])
def test_a_shape_that_is_not_a_shape_is_refused_at_construction(bad):
    with pytest.raises(PassError, match="Expected shape as a tuple of positive ints or None"):
        passes.SetInputShape(bad)


def test_no_shape_is_an_error_saying_what_to_give():
    with pytest.raises(PassError, match=r"needs the new shape.*inputs of model 'cnn' "
                                        r"\('img'\)"):
        keras_rewrite.rewrite(cnn(), ["set_input_shape"])


def test_the_config_round_trips_through_json_and_the_command_line_syntax():
    from keras_rewrite.cli import pass_options

    for shape in [(None, None, 3), {"seq": (None, 3), "meta": [4]}]:
        p = passes.SetInputShape(shape)
        again = passes.SetInputShape(**json.loads(json.dumps(p.get_config())))
        assert again.shape == p.shape
    assert passes.SetInputShape(["None", "null", 3]).shape == (None, None, 3)  # TOML
    for text in ("set_input_shape:shape=None,None,3", "set_input_shape:shape=(None,None,3)",
                 "set_input_shape:shape=[null,null,3]", "set_input_shape:shape=[None,None,3]"):
        spec = pass_options.PassSpec(*pass_options.pass_with_settings(text), "--pass")
        (built,) = pass_options.build_passes([spec])
        assert isinstance(built, passes.SetInputShape) and built.shape == (None, None, 3), text
    name, settings = pass_options.pass_with_settings(
        'set_input_shape:shape={"seq":[null,3],"meta":[4]}')
    assert settings == {"shape": {"seq": [None, 3], "meta": [4]}}


def test_it_is_registered_under_its_short_name():
    assert passes.SetInputShape is keras_rewrite.passes.registry.passes()["set_input_shape"]
    assert passes.SetInputShape.structural and passes.SetInputShape.outputs_unchanged


# ------------------------------------------------------------------------- real models


@pytest.mark.slow
def test_resnet50_at_any_size_and_at_160_equals_keras_own_resnet50_at_160(tmp_path):
    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3),
                                        include_top=False, pooling="avg")
    at_160 = keras.applications.ResNet50(weights=None, input_shape=(160, 160, 3),
                                         include_top=False, pooling="avg")
    at_160.set_weights(model.get_weights())
    x = images(160, 160)
    expected = predict(at_160, x)
    for shape in [(None, None, 3), (160, 160, 3)]:
        result = keras_rewrite.rewrite_with_report(model, [passes.SetInputShape(shape)])
        new = result.model
        assert result.report.weights_new == 0
        assert result.report.weights_carried == len(model.weights)
        same_weights(model, new)
        np.testing.assert_array_equal(predict(new, x)[0], expected[0])
        back = reloaded(new, tmp_path, f"r{shape[0]}.keras")
        assert tuple(back.inputs[0].shape) == (None, *shape)
        np.testing.assert_array_equal(predict(back, x)[0], expected[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV2", "EfficientNetB0"])
def test_keras_applications_at_a_new_size_equal_the_same_application_built_for_it(name,
                                                                                   tmp_path):
    build = getattr(keras.applications, name)
    model = build(weights=None, input_shape=(96, 96, 3), include_top=False, pooling="avg")
    at_64 = build(weights=None, input_shape=(64, 64, 3), include_top=False, pooling="avg")
    at_64.set_weights(model.get_weights())
    new = keras_rewrite.rewrite(model, [passes.SetInputShape((None, None, 3))])
    same_weights(model, new)
    x = RNG.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(predict(new, x)[0], predict(at_64, x)[0])
    x96 = RNG.uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    np.testing.assert_array_equal(predict(new, x96)[0], predict(model, x96)[0])
    back = reloaded(new, tmp_path)
    assert tuple(back.inputs[0].shape) == (None, None, None, 3)
    np.testing.assert_array_equal(predict(back, x)[0], predict(new, x)[0])


@pytest.mark.slow
def test_vgg16_with_its_dense_top_is_refused_naming_fc1_and_the_shape():
    model = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5)
    with pytest.raises(ShapeMismatchError,
                       match=r"layer 'fc1' \(Dense\) cannot take input shape \(None, 4608\) "
                             r"from 'flatten': expected \(None, 2048\)"):
        keras_rewrite.rewrite(model, [passes.SetInputShape((96, 96, 3))])


@pytest.mark.slow
def test_a_kerashub_backbone_with_a_fixed_sequence_length_saves_and_reloads_it(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=16)
    fixed = {name: (8,) for name in ("token_ids", "segment_ids", "padding_mask")}
    new = keras_rewrite.rewrite(backbone, [passes.SetInputShape(fixed)])
    x = {"token_ids": RNG.integers(0, 50, (2, 8)).astype("int32"),
         "segment_ids": np.zeros((2, 8), "int32"), "padding_mask": np.ones((2, 8), "int32")}
    assert {t.name: tuple(t.shape) for t in new.inputs} == {n: (None, 8) for n in fixed}
    assert_same_predictions(backbone, new, x)
    back = reloaded(new, tmp_path)
    assert {t.name: tuple(t.shape) for t in back.inputs} == {n: (None, 8) for n in fixed}
    assert_same_predictions(new, back, x)


@pytest.mark.parametrize("shape, compared", [((None, None, 3), True), ((12, 10, 3), False)])
def test_convert_file_writes_and_checks_a_model_with_a_new_input_shape(tmp_path, shape,
                                                                       compared):
    from keras_rewrite.conversion import convert_file

    model = cnn()
    model.save(tmp_path / "in.keras")
    report = convert_file(tmp_path / "in.keras", tmp_path / "out.keras",
                          [passes.SetInputShape(shape)])
    assert report.written and report.checked
    out = keras.models.load_model(tmp_path / "out.keras")
    assert tuple(out.inputs[0].shape) == (None, *shape)
    x = images(12, 10)  # the same function at the new size as Keras's own build of it
    assert np.array_equal(predict(out, x)[0], predict(cnn_like(model, (12, 10, 3)), x)[0])
    # A fixed new shape takes no batch of the old one: not compared, and said so.
    assert (report.max_abs_difference == report.max_abs_difference) is compared
    assert compared or "not compared: the input shape changed" in report.outputs_detail


def cnn_like(model, shape):
    twin = cnn(shape)
    twin.set_weights(model.get_weights())
    return twin
