"""Identity rewrite: same layers, configs and weights, bit-identical predictions."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from helpers import (assert_identical_copy, assert_same_predictions, model_fingerprint,
                     random_inputs)
from seed_models import build_cnn, build_unet


def roundtrip(model, x=None):
    before = model_fingerprint(model)
    copy = keras_rewrite.rewrite(model)
    assert_identical_copy(model, copy, x)
    assert model_fingerprint(model) == before, "rewrite mutated the caller's model"
    return copy


def test_sequential_with_input():
    model = keras.Sequential([keras.Input((6,)), layers.Dense(4, activation="relu"),
                              layers.Dropout(0.3), layers.Dense(2)], name="seq")
    copy = roundtrip(model)
    assert isinstance(copy, keras.Sequential) and copy.name == "seq"
    assert copy.get_config() == model.get_config()


def test_sequential_built_without_input():
    model = keras.Sequential([layers.Dense(4), layers.Dense(2)])
    model.build((None, 5))
    copy = roundtrip(model)
    assert isinstance(copy, keras.Sequential)


def test_sequential_built_by_calling_it():
    model = keras.Sequential([layers.Conv2D(3, 3), layers.GlobalAveragePooling2D()])
    model(np.zeros((1, 8, 8, 2), "float32"))
    roundtrip(model)


def test_functional_branches_and_skip_connections():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same")(inputs)
    a = layers.Conv2D(4, 1)(x)
    b = layers.BatchNormalization()(layers.Conv2D(4, 3, padding="same")(x))
    x = layers.Add(name="add")([x, a, b])
    y = layers.Concatenate(name="concat")([x, inputs])
    model = keras.Model(inputs, layers.GlobalMaxPooling2D()(y))
    copy = roundtrip(model)
    concat = copy.get_layer("concat")
    producers = [t._keras_history[0].name for t in concat._inbound_nodes[0].input_tensors]
    assert producers == ["add", inputs._keras_history[0].name]


def test_concatenate_keeps_argument_order():
    a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    model = keras.Model([a, b], layers.Concatenate(name="concatenate")([b, a]))
    g = keras_rewrite.to_graph(model)
    slots = {u: d["slot"] for u, v, d in g.in_edges("concatenate", data=True)}
    assert slots == {"b": 0, "a": 1}
    x = [np.ones((1, 2), "float32"), 2 * np.ones((1, 3), "float32")]
    roundtrip(model, x)
    out = keras_rewrite.rewrite(model)(x)
    assert np.array_equal(np.asarray(out), [[2, 2, 2, 1, 1]])


def test_multi_input_multi_output_with_dict_inputs():
    img = keras.Input((4, 4, 1), name="image")
    meta = keras.Input((3,), name="meta")
    x = layers.Flatten()(img)
    x = layers.Concatenate()([x, meta])
    x = layers.Dense(8, activation="relu")(x)
    model = keras.Model({"image": img, "meta": meta},
                        {"cls": layers.Dense(3, name="cls")(x), "reg": layers.Dense(1, name="reg")(x)})
    x = {"image": np.random.rand(2, 4, 4, 1).astype("float32"),
         "meta": np.random.rand(2, 3).astype("float32")}
    copy = roundtrip(model, x)
    assert set(copy(x)) == {"cls", "reg"}


class SplitInTwo(layers.Layer):
    def call(self, x):
        return x[..., :2], x[..., 2:]


def test_layer_with_several_outputs_keeps_them_apart():
    inputs = keras.Input((5, 3))
    seq, h, c = layers.LSTM(4, return_sequences=True, return_state=True, name="lstm")(inputs)
    lo, hi = SplitInTwo(name="split")(layers.Flatten()(seq))
    model = keras.Model(inputs, [layers.Dense(2)(h), c, hi, lo])
    g = keras_rewrite.to_graph(model)
    assert sorted(d["tensor_index"] for _, _, d in g.out_edges("lstm", data=True)) == [0, 1, 2]
    roundtrip(model)


def test_shared_layer_stays_shared():
    encoder = layers.Dense(4, name="encoder")
    a, b = keras.Input((6,), name="left"), keras.Input((6,), name="right")
    distance = layers.Subtract()([encoder(a), encoder(b)])
    model = keras.Model([a, b], distance)
    g = keras_rewrite.to_graph(model)
    assert g.nodes["encoder"]["spec"] is g.nodes["encoder:1"]["spec"]
    copy = roundtrip(model)
    shared = copy.get_layer("encoder")
    assert len(shared._inbound_nodes) == 2 and len(copy.weights) == 2


def test_nested_functional_and_sequential_models():
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, layers.Dense(5, name="inner_dense")(inner_in), name="inner")
    seq = keras.Sequential([keras.Input((5,)), layers.Dense(3, name="seq_dense"),
                            layers.BatchNormalization(name="seq_bn")], name="seq")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, seq(inner(inputs)))
    g = keras_rewrite.to_graph(model)
    assert g.nodes["inner"]["spec"].subgraph.nodes["inner_dense"]["kind"] == "layer"
    copy = roundtrip(model)
    assert isinstance(copy.get_layer("seq"), keras.Sequential)
    assert isinstance(copy.get_layer("inner"), keras.Model)


def test_nested_model_called_twice_is_shared():
    inner_in = keras.Input((4,))
    tower = keras.Model(inner_in, layers.Dense(4, name="tower_dense")(inner_in), name="tower")
    a, b = keras.Input((4,)), keras.Input((4,))
    model = keras.Model([a, b], layers.Add()([tower(a), tower(b)]))
    copy = roundtrip(model)
    assert len(copy.weights) == 2


def test_keras_ops_inside_functional_model():
    inputs = keras.Input((4,))
    x = layers.Dense(4)(inputs)
    y = keras.ops.add(x, inputs)
    y = keras.ops.relu(y) * 2.0
    z = keras.ops.concatenate([y, x], axis=-1)
    model = keras.Model(inputs, z)
    g = keras_rewrite.to_graph(model)
    assert {d["kind"] for _, d in g.nodes(data=True)} >= {"op", "layer"}
    roundtrip(model)


def test_lambda_keeps_the_function_object():
    unet = build_unet((32, 32, 3))
    copy = roundtrip(unet, np.random.rand(2, 32, 32, 3).astype("float32") * 255)
    # By class, not by Keras's auto-name ("lambda", "lambda_1"... after other tests' models).
    (original,) = [l for l in unet.layers if isinstance(l, layers.Lambda)]
    assert copy.get_layer(original.name).function is original.function


@keras.saving.register_keras_serializable(package="keras_rewrite_tests")
class ScaledDense(layers.Layer):
    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale = units, scale

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
        self.counter = self.add_weight(shape=(), name="counter", trainable=False,
                                       initializer="ones")

    def call(self, x):
        return self.scale * keras.ops.matmul(x, self.w)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}


def test_registered_custom_layer():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, ScaledDense(2, scale=3.0)(inputs))
    model.layers[1].counter.assign(7.0)
    copy = roundtrip(model)
    assert float(copy.layers[1].counter) == 7.0


def test_seed_models_roundtrip():
    roundtrip(build_cnn())
    roundtrip(build_unet((64, 64, 3)), np.random.rand(1, 64, 64, 3).astype("float32") * 255)


@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_compiled_model_is_compiled_alike_with_a_fresh_optimizer():
    model = build_cnn()
    model.optimizer.learning_rate = 0.0123
    copy = keras_rewrite.rewrite(model)
    assert copy.compiled
    assert copy.optimizer is not model.optimizer
    assert copy.optimizer.get_config() == model.optimizer.get_config()
    assert copy.loss == model.loss
    x = np.random.rand(4, 32, 32, 3).astype("float32")
    y = keras.utils.to_categorical(np.arange(4) % 10, 10)
    copy.fit(x, y, epochs=1, verbose=0)


def test_uncompiled_model_stays_uncompiled():
    model = keras.Sequential([keras.Input((2,)), layers.Dense(1)])
    assert not keras_rewrite.rewrite(model).compiled


def test_trainable_flags_are_kept():
    model = keras.Sequential([keras.Input((2,)), layers.Dense(3, trainable=False), layers.Dense(1)])
    copy = keras_rewrite.rewrite(model)
    assert [l.trainable for l in copy.layers] == [False, True]
    assert len(copy.trainable_weights) == 2


def test_report_lists_carried_weights():
    model = build_cnn()
    report = keras_rewrite.rewrite_with_report(model).report
    bn = next(l for l in model.layers if isinstance(l, layers.BatchNormalization)).name
    assert report.layer(bn).carried == [
        "gamma", "beta", "moving_mean", "moving_variance"]
    assert report.weights_new == 0 and report.weights_dropped == 0
    assert report.weights_carried == len(model.weights)
    assert list(report.layers) == [l.name for l in model.layers]  # weightless layers too
    assert bn in report.table()


def test_weights_that_no_longer_fit_are_left_new_with_the_reason():
    inputs = keras.Input((4,))
    x = layers.Dense(3, name="hidden")(inputs)
    model = keras.Model(inputs, layers.Dense(2, name="head")(x))
    g = keras_rewrite.to_graph(model)
    g.nodes["hidden"]["spec"].config["units"] = 5
    g.nodes["hidden"]["output_shapes"] = None
    report = keras_rewrite.Report()
    new = keras_rewrite.to_model(g, report=report)
    assert report.layer("hidden").carried == []
    assert ("kernel", "shape changed: original (4, 3), now (4, 5)") in report.layer("hidden").new
    assert report.layer("head").carried == ["bias"]
    np.testing.assert_array_equal(new.get_layer("head").bias, model.get_layer("head").bias)
    # New weights are drawn from the layer's own initializers (Glorot uniform for these
    # kernels), not left at the zeros the fast build path starts from.
    for layer, fan_in, fan_out in ((new.get_layer("hidden"), 4, 5), (new.get_layer("head"), 5, 2)):
        kernel = np.asarray(layer.kernel)
        limit = np.sqrt(6 / (fan_in + fan_out))
        assert np.all(np.abs(kernel) <= limit) and np.std(kernel) > limit / 10, layer.name


def test_output_shape_change_names_the_first_changed_layer():
    inputs = keras.Input((4,))
    x = layers.Dense(3, name="hidden")(inputs)
    x = layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, layers.Activation("softmax", name="act")(x))
    g = keras_rewrite.to_graph(model)
    g.nodes["head"]["spec"].config["units"] = 7
    with pytest.raises(keras_rewrite.ShapeMismatchError) as info:
        keras_rewrite.to_model(g)
    assert info.value.layer == "head"
    assert info.value.expected == [(None, 2)] and info.value.received == [(None, 7)]
    assert "layer 'head'" in str(info.value)


def test_subclassed_model_is_refused_with_a_reason():
    class MyModel(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = layers.Dense(2)

        def call(self, x):
            return self.d(x)

    model = MyModel()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(keras_rewrite.UnsupportedModelError, match="subclassed keras.Model"):
        keras_rewrite.rewrite(model)


def test_unbuilt_sequential_is_refused_with_what_to_do():
    model = keras.Sequential([layers.Dense(2)])
    with pytest.raises(keras_rewrite.UnsupportedModelError, match="has not been built.*build"):
        keras_rewrite.rewrite(model)


def test_not_a_model_is_refused():
    with pytest.raises(keras_rewrite.UnsupportedModelError, match="Received: Dense"):
        keras_rewrite.to_graph(layers.Dense(2))


def test_calls_made_outside_the_model_are_ignored():
    dense = layers.Dense(2, name="d")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, dense(inputs))
    other_in = keras.Input((3,))
    keras.Model(other_in, dense(other_in))  # a second model calling the same layer
    g = keras_rewrite.to_graph(model)
    assert [n for n, k in g.nodes(data="kind") if k == "layer"] == ["d"]
    roundtrip(model)


def test_frozen_model_with_a_trainable_layer_inside_is_kept():
    inner = keras.Sequential([keras.Input((2,)), layers.Dense(2, name="frozen_dense")],
                             name="backbone")
    inner.trainable = False
    inputs = keras.Input((2,))
    model = keras.Model(inputs, layers.Dense(1, name="head")(inner(inputs)))
    copy = keras_rewrite.rewrite(model)
    assert copy.get_layer("backbone").trainable is False
    assert copy.get_layer("backbone").get_layer("frozen_dense").trainable is False
    assert [w.name for w in copy.trainable_weights] == ["kernel", "bias"]
    assert copy.get_layer("head").trainable is True


@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_training_the_copy_leaves_the_original_untouched():
    # The copy's variables start out sharing the original's buffers (assign from the
    # original's value, no extra copy); the backend must copy before the first write.
    model = build_cnn()
    before = model_fingerprint(model)
    copy = keras_rewrite.rewrite(model)
    x = np.random.default_rng(1).random((8, 32, 32, 3), dtype="float32")
    y = keras.utils.to_categorical(np.arange(8) % 10, 10)
    copy.fit(x, y, epochs=1, batch_size=4, verbose=0)
    copy.layers[0].kernel.assign_add(np.ones(copy.layers[0].kernel.shape, "float32"))
    assert model_fingerprint(model) == before
    assert not np.array_equal(np.asarray(copy.layers[0].kernel), np.asarray(model.layers[0].kernel))
    # ...and the other way round: training the original leaves the copy as it was.
    copy_before = model_fingerprint(copy)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert model_fingerprint(copy) == copy_before


def test_sequential_weights_that_no_longer_fit_get_their_initializer():
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="first"),
                              layers.Dense(2, name="second", bias_initializer="ones")])

    def widen_first(graph):
        graph.nodes["first"]["spec"].config["units"] = 6
        graph.nodes["first"]["output_shapes"] = None
        return keras_rewrite.PassResult("widen_first", modified=True)

    result = keras_rewrite.rewrite_with_report(model, [widen_first])
    assert isinstance(result.model, keras.Sequential)
    second = result.model.get_layer("second")
    assert [name for name, _ in result.report.layer("second").new] == ["kernel"]
    assert np.std(np.asarray(second.kernel)) > 0.05  # drawn (Glorot), not left at zero
    np.testing.assert_array_equal(second.bias, model.get_layer("second").bias)


class UnnamedScale(layers.Layer):
    """Like ConvNeXt's LayerScale: its weight has no name, so Keras numbers it globally."""

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gamma


def test_unnamed_weights_are_carried_over():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, UnnamedScale(name="scale")(inputs))
    model.get_layer("scale").gamma.assign([2.0, 3.0, 4.0])  # "trained": not the initial value
    layers.Dense(2)(inputs)  # more unnamed-weight numbering happens in between
    result = keras_rewrite.rewrite_with_report(model)
    np.testing.assert_array_equal(result.model.get_layer("scale").gamma, [2.0, 3.0, 4.0])
    assert len(result.report.layer("scale").carried) == 1 and result.report.weights_new == 0
