"""L2Regularization: penalty = sum of c * ||W||^2 over kernels, predictions bit-identical."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from helpers import assert_same_predictions, model_fingerprint, random_inputs
from keras_rewrite.passes import L2Regularization, run_passes

# The weights each layer class regularizes, by variable name, written out here independently of
# the pass's own table.
KERNEL_NAMES = {"kernel", "recurrent_kernel", "depthwise_kernel", "pointwise_kernel",
                "embeddings"}


def all_layers(model):
    out = []
    for layer in model.layers:
        out.extend(all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def expected_penalty(model, coefficients, names=KERNEL_NAMES):
    """sum over layers of c * ||W||^2 (float64), c from `coefficients` (layer name -> c)."""
    total = 0.0
    for layer in all_layers(model):
        c = coefficients.get(layer.name, 0.0)
        for w in layer.trainable_weights:
            if w.name in names:
                total += c * np.sum(np.asarray(w, dtype=np.float64) ** 2)
    return total


def penalty(model):
    return float(sum(float(x) for x in model.losses))


def l2_config(layer, key="kernel_regularizer"):
    config = layer.get_config()[key]
    assert config is not None, f"{layer.name} has no {key}"
    assert config["class_name"] == "L2", config
    return config["config"]["l2"]


def conv_zoo():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = layers.SeparableConv2D(4, 3, padding="same", name="separable")(x)
    x = layers.Conv2DTranspose(3, 2, strides=2, name="transpose")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(2, name="dense")(x)
    return keras.Model(inputs, outputs)


def rewrite(model, *args, **kwargs):
    result = keras_rewrite.rewrite_with_report(model, [L2Regularization(*args, **kwargs)])
    return result.model, result.report.passes[0]


def test_every_kernel_gets_l2_and_predictions_stay_identical():
    model = conv_zoo()
    before = model_fingerprint(model)
    new, result = rewrite(model, 1e-3)

    assert_same_predictions(model, new, random_inputs(model))
    assert model_fingerprint(model) == before, "the caller's model was changed"
    assert model.losses == []
    names = ["conv", "depthwise", "separable", "transpose", "dense"]
    assert result.modified and result.outputs_unchanged
    assert result.changed_layers == names
    assert l2_config(new.get_layer("depthwise"), "depthwise_regularizer") == 1e-3
    assert l2_config(new.get_layer("separable"), "depthwise_regularizer") == 1e-3
    assert l2_config(new.get_layer("separable"), "pointwise_regularizer") == 1e-3
    for name in ("conv", "transpose", "dense"):
        assert l2_config(new.get_layer(name)) == 1e-3
        assert new.get_layer(name).get_config()["bias_regularizer"] is None
    assert new.get_layer("bn").get_config()["gamma_regularizer"] is None
    want = expected_penalty(new, dict.fromkeys(names, 1e-3))
    assert want > 0
    np.testing.assert_allclose(penalty(new), want, rtol=1e-6)


def test_embedding_and_recurrent_layers_use_their_own_config_keys():
    inputs = keras.Input((6,), dtype="int32")
    x = layers.Embedding(20, 4, name="embedding")(inputs)
    x = layers.LSTM(3, return_sequences=True, name="lstm")(x)
    x = layers.GRU(3, return_sequences=True, name="gru")(x)
    x = layers.SimpleRNN(2, name="rnn")(x)
    model = keras.Model(inputs, x)
    new, result = rewrite(model, 2e-3)

    assert l2_config(new.get_layer("embedding"), "embeddings_regularizer") == 2e-3
    for name in ("lstm", "gru", "rnn"):
        assert l2_config(new.get_layer(name)) == 2e-3
        assert l2_config(new.get_layer(name), "recurrent_regularizer") == 2e-3
    assert "recurrent_regularizer=L2(0.002)" in result.changes[1].detail
    assert_same_predictions(model, new, random_inputs(model))
    np.testing.assert_allclose(
        penalty(new), expected_penalty(new, dict.fromkeys(["embedding", "lstm", "gru", "rnn"],
                                                          2e-3)), rtol=1e-6)


def named_model():
    inputs = keras.Input((5,))
    x = inputs
    for name in ("enc_conv1", "enc_conv2", "dec_conv1", "dec_conv2", "head"):
        x = layers.Dense(4, name=name)(x)
    return keras.Model(inputs, x)


def test_per_layer_exact_names_beat_globs_and_zero_turns_a_layer_off():
    model = named_model()
    new, result = rewrite(model, 1e-3, per_layer={"enc_*": 1e-2, "enc_conv2": 0, "head": 0.5})
    want = {"enc_conv1": 1e-2, "enc_conv2": 0.0, "dec_conv1": 1e-3, "dec_conv2": 1e-3,
            "head": 0.5}
    np.testing.assert_allclose(penalty(new), expected_penalty(new, want), rtol=1e-6)
    assert new.get_layer("enc_conv2").get_config()["kernel_regularizer"] is None
    assert l2_config(new.get_layer("enc_conv1")) == 1e-2
    changes = {c.layer: c for c in result.changes}
    assert changes["enc_conv2"].action == "skipped"
    assert "coefficient 0 from per_layer['enc_conv2']" in changes["enc_conv2"].detail
    assert "per_layer['enc_*']" in changes["enc_conv1"].detail
    assert "from factor" in changes["dec_conv1"].detail


def test_the_most_specific_glob_wins_and_equal_ones_must_agree():
    model = named_model()
    new, _ = rewrite(model, 0, per_layer={"*conv*": 1e-3, "enc_conv*": 1e-2})
    assert l2_config(new.get_layer("enc_conv1")) == 1e-2
    assert l2_config(new.get_layer("dec_conv1")) == 1e-3
    assert new.get_layer("head").get_config()["kernel_regularizer"] is None  # factor 0

    with pytest.raises(keras_rewrite.PassError, match=r"equally specific.*'enc_conv1'"):
        rewrite(model, per_layer={"enc*": 1e-3, "*nv1": 1e-2})
    rewrite(model, per_layer={"enc*": 1e-3, "*nv1": 1e-3})  # same coefficient: no conflict

    # "[12]" pins down one character less than "1" does; an exact name beats every glob,
    # even one that matches it with no characters to spare.
    new, _ = rewrite(model, per_layer={"enc_conv[12]": 0.2, "enc_conv1*": 0.3,
                                       "enc_conv1": 0.4, "*_conv2": 0.5})
    assert l2_config(new.get_layer("enc_conv1")) == 0.4
    assert l2_config(new.get_layer("enc_conv2")) == 0.2


def test_a_pattern_matching_no_layer_lists_the_nearest_names():
    model = named_model()
    with pytest.raises(keras_rewrite.PassError) as info:
        rewrite(model, per_layer={"enc_cnv1": 1e-2})
    message = str(info.value)
    assert "'enc_cnv1' matches no layer" in message and "enc_conv1" in message
    with pytest.raises(keras_rewrite.PassError, match="matches no layer"):
        rewrite(model, per_layer={"bn*": 1e-2})


@pytest.mark.parametrize("kwargs, message", [
    ({"factor": -1}, "Expected a float >= 0. Received: factor=-1"),
    ({"factor": float("nan")}, "Received: factor=nan"),
    ({"factor": "0.1"}, "Received: factor='0.1'"),
    ({"factor": True}, "Received: factor=True"),
    ({"per_layer": {"x": -0.5}}, r"per_layer\['x'\]. Expected a float >= 0. Received: -0.5"),
    ({"per_layer": ["x"]}, "Expected a dict"),
    ({"existing": "overwrite"}, "Expected 'keep' or 'replace'. Received: existing='overwrite'"),
    ({"layer_types": ["Conv2d"]}, r"Received: 'Conv2d'. Did you mean \['Conv2D'"),
    ({"layer_types": [layers.BatchNormalization]}, "BatchNormalization has no weight kernel"),
])
def test_bad_arguments_say_what_was_expected_and_received(kwargs, message):
    with pytest.raises(keras_rewrite.PassError, match=message):
        L2Regularization(**kwargs)


def test_layer_types_restricts_by_class_or_name():
    model = conv_zoo()
    for types in (["Conv2D", "Dense"], [layers.Conv2D, layers.Dense]):
        new, result = rewrite(model, 1e-3, layer_types=types)
        assert result.changed_layers == ["conv", "dense"]
        assert new.get_layer("separable").get_config()["depthwise_regularizer"] is None
        skipped = {c.layer: c.detail for c in result.skipped}
        assert skipped["transpose"] == "Conv2DTranspose is not in layer_types"


def test_include_biases():
    model = named_model()
    new, _ = rewrite(model, 1e-3, include_biases=True)
    assert l2_config(new.get_layer("head"), "bias_regularizer") == 1e-3
    want = expected_penalty(new, dict.fromkeys([l.name for l in new.layers], 1e-3),
                            names=KERNEL_NAMES | {"bias"})
    np.testing.assert_allclose(penalty(new), want, rtol=1e-6)


def test_regularizers_survive_save_and_load(tmp_path):
    new, _ = rewrite(conv_zoo(), 1e-3, per_layer={"dense": 0.25})
    path = tmp_path / "model.keras"
    new.save(path)
    loaded = keras.models.load_model(path)
    assert l2_config(loaded.get_layer("dense")) == 0.25
    assert l2_config(loaded.get_layer("separable"), "pointwise_regularizer") == 1e-3
    np.testing.assert_allclose(penalty(loaded), penalty(new), rtol=1e-6)


def test_existing_regularizers_are_kept_or_replaced():
    inputs = keras.Input((3,))
    x = layers.Dense(4, name="has_l1", kernel_regularizer=keras.regularizers.L1(0.5))(inputs)
    model = keras.Model(inputs, layers.Dense(2, name="plain")(x))

    kept, result = rewrite(model, 1e-3)
    assert kept.get_layer("has_l1").get_config()["kernel_regularizer"]["class_name"] == "L1"
    change = result.changes[0]
    assert change.action == "skipped" and "kept existing regularizer L1(0.5)" in change.detail

    replaced, result = rewrite(model, 1e-3, existing="replace")
    assert l2_config(replaced.get_layer("has_l1")) == 1e-3
    assert result.changes[0].action == "added_regularizer"
    assert "replacing L1(0.5)" in result.changes[0].detail
    np.testing.assert_allclose(
        penalty(replaced), expected_penalty(replaced, {"has_l1": 1e-3, "plain": 1e-3}),
        rtol=1e-6)


def test_running_twice_is_running_once():
    model = conv_zoo()
    once, first = rewrite(model, 1e-3, per_layer={"dense": 0.1}, existing="replace")
    twice, second = rewrite(once, 1e-3, per_layer={"dense": 0.1}, existing="replace")
    assert first.modified and not second.modified
    assert second.changed_layers == []
    assert all("already L2" in c.detail for c in second.changes)
    assert [l.get_config() for l in twice.layers] == [l.get_config() for l in once.layers]
    np.testing.assert_allclose(penalty(twice), penalty(once), rtol=1e-6)


def test_nested_models_and_shared_layers():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, layers.Dense(4, name="inner_dense")(inner_in), name="block")
    shared = layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    x = shared(inner(inputs))
    x = shared(x)  # the same layer twice: one spec, one regularizer, one penalty term
    model = keras.Model(inputs, layers.Dense(1, name="out")(x))
    graph = keras_rewrite.to_graph(model)
    (result,) = run_passes(graph, [L2Regularization(1e-3, per_layer={"block": 0.1})])
    keras_rewrite.validate(graph)
    assert [c.layer for c in result.changes] == ["inner_dense", "shared", "out"]

    new = keras_rewrite.to_model(graph)
    assert l2_config(new.get_layer("block").get_layer("inner_dense")) == 0.1
    assert_same_predictions(model, new, random_inputs(model))
    want = expected_penalty(new, {"inner_dense": 0.1, "shared": 1e-3, "out": 1e-3})
    np.testing.assert_allclose(penalty(new), want, rtol=1e-6)

    # A pattern on the layer's own name beats one on the model around it.
    new, _ = rewrite(model, 1e-3, per_layer={"block": 0.1, "inner_*": 0.2})
    assert l2_config(new.get_layer("block").get_layer("inner_dense")) == 0.2


def test_frozen_layers_are_reported():
    inputs = keras.Input((5, 3))
    frozen = layers.Dense(2, name="frozen")
    frozen.trainable = False
    model = keras.Model(inputs, frozen(layers.Flatten()(inputs)))
    _, result = rewrite(model, 1e-3)
    changes = {c.layer: c for c in result.changes}
    assert changes["frozen"].action == "added_regularizer"
    assert "frozen (trainable=False)" in changes["frozen"].detail


def all_kernels(model):
    """Every kernel-like trainable variable, sub-layers at any depth included."""
    return [v for v in model.trainable_weights
            if v.name in KERNEL_NAMES or v.name.endswith("kernel")]


def numpy_penalty(variables, c):
    return sum(c * np.sum(np.asarray(v, dtype=np.float64) ** 2) for v in variables)


@keras.saving.register_keras_serializable("test_l2")
class Block(layers.Layer):
    """A keras.io-style transformer block: its kernels live in sub-layers."""

    def __init__(self, dim=4, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.att = layers.MultiHeadAttention(num_heads=2, key_dim=dim)
        self.ffn = keras.Sequential([layers.Dense(8, activation="relu"), layers.Dense(dim)])

    def call(self, x):
        return self.ffn(x + self.att(x, x))


def wrapper_zoo():
    inputs = keras.Input((5, 4))
    x = layers.Bidirectional(layers.LSTM(2, return_sequences=True), name="bi")(inputs)
    x = layers.TimeDistributed(layers.Dense(4), name="td")(x)
    x = layers.RNN(layers.GRUCell(4), return_sequences=True, name="rnn")(x)
    x = layers.MultiHeadAttention(num_heads=2, key_dim=2, name="mha")(x, x)
    x = Block(name="block")(x)
    return keras.Model(inputs, layers.GlobalAveragePooling1D()(x))


def test_l2_reaches_kernels_in_wrappers_attention_and_custom_sub_layers():
    model = wrapper_zoo()
    new, result = rewrite(model, 1e-3)
    kernels = all_kernels(new)
    assert len(kernels) == 2 * 2 + 1 + 2 + 4 + 4 + 2  # bi(2 LSTMs x 2), td, rnn, mha, block
    assert [v.path for v in kernels if v.regularizer is None] == []
    assert penalty(new) == pytest.approx(numpy_penalty(kernels, 1e-3), rel=1e-6)
    labels = {c.layer for c in result.changes if c.action == "added_regularizer"}
    assert {"mha/query", "block/query", "bi/forward_lstm", "bi/backward_lstm",
            "rnn/gru_cell"} <= labels
    assert len([label for label in labels if label.startswith("block/dense")]) == 2
    assert_same_predictions(model, new, random_inputs(model))


def test_the_report_lists_kernels_left_without_l2_and_why():
    @keras.saving.register_keras_serializable("test_l2")
    class OwnKernel(layers.Layer):
        def build(self, shape):
            self.kernel = self.add_weight(shape=(shape[-1], 2), name="kernel")

        def call(self, x):
            return x @ self.kernel

    inputs = keras.Input((3,))
    model = keras.Model(inputs, OwnKernel(name="own")(inputs))
    _, result = rewrite(model, 1e-3)
    (change,) = [c for c in result.changes if c.layer == "own"]
    assert change.action == "skipped" and "'kernel' left without L2" in change.detail


def test_apply_in_place_reaches_sub_layer_kernels_too():
    model = wrapper_zoo()
    result = L2Regularization(1e-3).apply_in_place(model)
    assert result.modified
    kernels = all_kernels(model)
    assert [v.path for v in kernels if v.regularizer is None] == []
    assert penalty(model) == pytest.approx(numpy_penalty(kernels, 1e-3), rel=1e-6)


# ------------------------------------------------------------------------------ in place


def test_apply_in_place_sets_layer_and_variable_and_matches_the_graph_pass(tmp_path):
    model = conv_zoo()
    x = random_inputs(model)
    before = [np.asarray(p) for p in keras.tree.flatten(model(x))]
    l2 = L2Regularization(1e-3, per_layer={"dense": 0.5})
    _, graph_result = rewrite(model, 1e-3, per_layer={"dense": 0.5})

    result = l2.apply_in_place(model)
    assert [(c.layer, c.action, c.detail) for c in result.changes] == \
        [(c.layer, c.action, c.detail) for c in graph_result.changes]
    assert model.get_layer("conv").kernel.regularizer is model.get_layer("conv").kernel_regularizer
    assert model.get_layer("separable").pointwise_kernel.regularizer is not None
    want = expected_penalty(model, {"conv": 1e-3, "depthwise": 1e-3, "separable": 1e-3,
                                    "transpose": 1e-3, "dense": 0.5})
    np.testing.assert_allclose(penalty(model), want, rtol=1e-6)
    for got, old in zip(keras.tree.flatten(model(x)), before):
        assert np.array_equal(np.asarray(got), old)

    assert not l2.apply_in_place(model).modified
    np.testing.assert_allclose(penalty(model), want, rtol=1e-6)

    model.save(tmp_path / "in_place.keras")
    loaded = keras.models.load_model(tmp_path / "in_place.keras")
    assert l2_config(loaded.get_layer("dense")) == 0.5
    np.testing.assert_allclose(penalty(loaded), want, rtol=1e-6)


def test_apply_in_place_on_recurrent_layers_sets_the_cell():
    inputs = keras.Input((4, 3))
    model = keras.Model(inputs, layers.LSTM(2, name="lstm")(inputs))
    L2Regularization(1e-2).apply_in_place(model)
    lstm = model.get_layer("lstm")
    assert lstm.cell.recurrent_kernel.regularizer is not None
    assert l2_config(lstm, "recurrent_regularizer") == 1e-2
    np.testing.assert_allclose(penalty(model), expected_penalty(model, {"lstm": 1e-2}),
                               rtol=1e-6)


def test_apply_in_place_completes_a_regularizer_set_only_on_the_layer():
    # The trap of KERAS_FACTS: a built layer's kernel_regularizer alone is not in the loss.
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layers.Dense(2, name="d")(inputs))
    model.get_layer("d").kernel_regularizer = keras.regularizers.L2(1e-3)
    assert model.losses == []
    result = L2Regularization(1e-3).apply_in_place(model)
    assert result.modified
    assert "set on the variable too" in result.changes[0].detail
    np.testing.assert_allclose(penalty(model), expected_penalty(model, {"d": 1e-3}), rtol=1e-6)


def test_sequential_seed_cnn_both_ways():
    from seed_models import build_cnn

    model = build_cnn()
    new, result = rewrite(model, 1e-3)
    assert isinstance(new, keras.Sequential)
    kernels = [l.name for l in model.layers if isinstance(l, (layers.Conv2D, layers.Dense))]
    assert result.changed_layers == kernels and len(kernels) == 6
    assert_same_predictions(model, new, random_inputs(model))
    want = expected_penalty(new, dict.fromkeys(kernels, 1e-3))
    np.testing.assert_allclose(penalty(new), want, rtol=1e-6)

    in_place = L2Regularization(1e-3).apply_in_place(model)
    assert in_place.changed_layers == kernels
    np.testing.assert_allclose(penalty(model), want, rtol=1e-6)


def test_apply_in_place_reaches_into_nested_models():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, layers.Dense(4, name="inner_dense")(inner_in), name="block")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(1, name="out")(inner(inputs)))
    L2Regularization(1e-3, per_layer={"block": 0.1}).apply_in_place(model)
    assert model.get_layer("block").get_layer("inner_dense").kernel.regularizer is not None
    np.testing.assert_allclose(
        penalty(model), expected_penalty(model, {"inner_dense": 0.1, "out": 1e-3}), rtol=1e-6)
