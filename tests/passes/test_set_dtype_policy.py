"""SetDtypePolicy: every layer's policy set, variables float32 and carried bit for bit, the
output softmax/sigmoid kept float32 (and reported), equal to what Keras builds itself under
the same global policy."""
import json

import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from helpers import all_layers, assert_identical_copy, assert_same_predictions, predict
from keras_rewrite import passes, to_graph, validate
from keras_rewrite.errors import PassError

RNG = np.random.default_rng(0)
MIXED = ("mixed_float16", "mixed_bfloat16")
# Largest absolute difference from the float32 original accepted on outputs of size ~1
# (float16 has an 11-bit significand, bfloat16 an 8-bit one; a few layers accumulate).
TOLERANCE = {"mixed_float16": 1e-2, "mixed_bfloat16": 5e-2}


def classifier(build=None):
    """Conv -> BN -> ReLU -> GAP -> Dense -> softmax, with trained-like BN statistics.
    `build` (a policy) builds it the way Keras does under that global policy."""
    if build:
        keras.mixed_precision.set_global_policy(build)
    try:
        inputs = keras.Input((8, 8, 3), name="img")
        x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
        x = layers.BatchNormalization(name="bn")(x)
        x = layers.ReLU(name="relu")(x)
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        x = layers.Dense(5, name="logits")(x)
        model = keras.Model(inputs, layers.Activation("softmax", name="probs")(x))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    bn = model.get_layer("bn")
    bn.moving_mean.assign(RNG.standard_normal(4).astype("float32"))
    bn.moving_variance.assign(RNG.uniform(0.5, 2, 4).astype("float32"))
    return model


def images(batch=4):
    return RNG.standard_normal((batch, 8, 8, 3)).astype("float32")


def policies(model):
    """The layers' policies (a model's own is not in Keras's Functional config: a reloaded
    model takes the global policy, as a Keras-built mixed model does)."""
    return {layer.name: layer.dtype_policy.name for layer in all_layers(model)
            if not isinstance(layer, keras.Model)}


def same_float32_weights(a, b):
    assert len(a.weights) == len(b.weights)
    for u, v in zip(a.weights, b.weights):
        # float32 stays float32 (an adapted Normalization's int64 count stays int64)
        assert str(v.dtype) == str(u.dtype) and u.shape == v.shape, v.path
        assert np.array_equal(np.asarray(u), np.asarray(v)), v.path


def reloaded(model, tmp_path, name="m.keras"):
    path = tmp_path / name
    model.save(path)
    return keras.models.load_model(path)


def changes(result, action):
    return {c.layer: c.detail for c in result.report.passes[0].changes if c.action == action}


@pytest.mark.parametrize("policy", MIXED)
def test_every_layer_gets_the_policy_the_output_softmax_stays_float32(policy, tmp_path):
    model = classifier()
    result = keras_rewrite.rewrite_with_report(model, [passes.SetDtypePolicy(policy)])
    new = result.model
    assert policies(new) == {"img": "float32", "conv": policy, "bn": policy, "relu": policy,
                             "gap": policy, "logits": policy, "probs": "float32"}
    compute = policy.split("_")[1]
    assert str(new.get_layer("logits").output.dtype) == compute
    assert str(new.outputs[0].dtype) == "float32"
    same_float32_weights(model, new)
    assert result.report.weights_new == 0 and result.report.weights_carried == len(model.weights)
    # Keras's own build under the global policy, with the same weights, computes the same
    # up to the kept softmax: the logits are bit-identical.
    native = classifier(build=policy)
    native.set_weights(model.get_weights())
    x = images()
    logits = keras.Model(new.inputs, new.get_layer("logits").output)
    native_logits = keras.Model(native.inputs, native.get_layer("logits").output)
    np.testing.assert_array_equal(predict(logits, x)[0], predict(native_logits, x)[0])
    # Against the float32 original: rounding, no more; and really computed in low precision.
    out, ref = predict(new, x)[0], predict(model, x)[0]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=TOLERANCE[policy])
    assert not np.array_equal(predict(logits, x)[0].astype("float32"),
                              predict(keras.Model(model.inputs,
                                                  model.get_layer("logits").output), x)[0])
    back = reloaded(new, tmp_path)
    assert policies(back) == policies(new)
    assert_same_predictions(new, back, x)


def test_the_report_lists_what_was_kept_and_why_and_notes_the_normalization():
    result = keras_rewrite.rewrite_with_report(classifier(), [passes.SetDtypePolicy(
        "mixed_float16")])
    (kept,) = changes(result, "kept_float32").items()
    assert kept[0] == "probs"
    assert "model output 'output:0' through Activation('softmax')" in kept[1]
    assert "mixed-precision guide" in kept[1]
    set_ = changes(result, "set_dtype_policy")
    assert set(set_) == {"conv", "bn", "relu", "gap", "logits"}
    assert set_["conv"] == "float32 -> mixed_float16"
    # A Functional graph's own policy is not in its file: it is left (a KerasHub model's is
    # set, see test_a_kerashub_backbone_saves_its_policies_as_a_recipe).
    assert result.model.dtype_policy.name == "float32"
    assert "Keras computes BatchNormalization in float32 itself" in set_["bn"]
    assert result.report.outputs_unchanged is False
    assert "kept_float32 - it produces model output" in result.report.table()


@pytest.mark.parametrize("head", ["fused_softmax", "fused_sigmoid", "softmax_layer",
                                  "softmax_then_reshape"])
def test_each_kind_of_output_softmax_or_sigmoid_is_kept_float32(head):
    inputs = keras.Input((4,), name="x")
    x = layers.Dense(6, activation="relu", name="hidden")(inputs)
    if head == "fused_softmax":
        x = layers.Dense(6, activation="softmax", name="out")(x)
        kept = {"out"}
    elif head == "fused_sigmoid":
        x = layers.Dense(1, activation="sigmoid", name="out")(x)
        kept = {"out"}
    elif head == "softmax_layer":
        x = layers.Softmax(name="out")(layers.Dense(6, name="pre")(x))
        kept = {"out"}
    else:
        x = layers.Activation("softmax", name="sm")(layers.Dense(6, name="pre")(x))
        x = layers.Reshape((2, 3), name="out")(x)
        kept = {"sm", "out"}
    model = keras.Model(inputs, x)
    result = keras_rewrite.rewrite_with_report(model, [passes.SetDtypePolicy("mixed_float16")])
    assert set(changes(result, "kept_float32")) == kept
    assert {n for n, p in policies(result.model).items() if p == "float32"} == kept | {"x"}
    assert str(result.model.outputs[0].dtype) == "float32"
    assert result.model.get_layer("hidden").dtype_policy.name == "mixed_float16"


def test_a_linear_output_is_not_kept_and_computes_in_the_new_dtype():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(2, name="out")(layers.Dense(3)(inputs)))
    result = keras_rewrite.rewrite_with_report(model, [passes.SetDtypePolicy("mixed_bfloat16")])
    assert changes(result, "kept_float32") == {}
    assert str(result.model.outputs[0].dtype) == "bfloat16"


def test_nested_models_layers_get_the_policy_and_a_nested_output_softmax_is_kept(tmp_path):
    inner = classifier()
    inputs = keras.Input((8, 8, 3), name="outer_in")
    model = keras.Model(inputs, inner(layers.Rescaling(2.0, name="scale")(inputs)))
    result = keras_rewrite.rewrite_with_report(model, [passes.SetDtypePolicy("mixed_float16")])
    new = result.model
    got = policies(new)
    assert got["scale"] == got["conv"] == got["logits"] == "mixed_float16"
    assert got["probs"] == "float32" and set(changes(result, "kept_float32")) == {"probs"}
    same_float32_weights(model, new)
    x = images()
    np.testing.assert_allclose(predict(new, x)[0], predict(model, x)[0], atol=1e-2)
    back = reloaded(new, tmp_path)
    assert policies(back) == got
    assert_same_predictions(new, back, x)


def wrappers(build=None):
    if build:
        keras.mixed_precision.set_global_policy(build)
    try:
        inputs = keras.Input((5, 3))
        x = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bi")(inputs)
        x = layers.TimeDistributed(layers.Dense(3), name="td")(x)
        x = layers.RNN(layers.GRUCell(3), name="rnn")(x)
        return keras.Model(inputs, layers.Dense(2, name="out")(x))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_layers_inside_wrappers_get_the_policy_as_under_keras_own_global_policy(tmp_path):
    from keras_rewrite.verify import walk_layers

    model = wrappers()
    new = keras_rewrite.rewrite(model, [passes.SetDtypePolicy("mixed_float16")])
    native = wrappers(build="mixed_float16")
    native.set_weights(model.get_weights())
    def inner(m):  # the policies of the layers inside the wrappers, in order
        return [(path.count("/"), layer.dtype_policy.name) for path, layer in walk_layers(m)
                if "/" in path]

    assert inner(new) == inner(native)  # (native's auto-named sub-layers have other names)
    assert len(inner(new)) == 6 and {p for _, p in inner(new)} == {"mixed_float16"}
    same_float32_weights(model, new)
    x = RNG.standard_normal((2, 5, 3)).astype("float32")
    assert_same_predictions(native, new, x)
    back = reloaded(new, tmp_path)
    assert inner(back) == inner(new)
    assert_same_predictions(new, back, x)


def test_float32_on_a_float32_model_changes_nothing():
    model = classifier()
    result = keras_rewrite.rewrite_with_report(model, [passes.SetDtypePolicy("float32")])
    assert not result.report.passes[0].modified and result.report.passes[0].changes == []
    assert result.report.outputs_unchanged is True
    assert_identical_copy(model, result.model, images())


def test_float32_turns_a_mixed_model_back_and_applying_a_policy_twice_is_a_no_op():
    model = classifier()
    mixed = keras_rewrite.rewrite(model, [passes.SetDtypePolicy("mixed_float16")])
    again = keras_rewrite.rewrite_with_report(mixed, [passes.SetDtypePolicy("mixed_float16")])
    assert not again.report.passes[0].modified
    assert set(changes(again, "kept_float32")) == {"probs"}  # still said, nothing changed
    back = keras_rewrite.rewrite_with_report(mixed, [passes.SetDtypePolicy("float32")])
    assert set(policies(back.model).values()) == {"float32"}
    assert set(changes(back, "set_dtype_policy")) == {"conv", "bn", "relu", "gap", "logits"}
    same_float32_weights(model, back.model)
    assert_same_predictions(model, back.model, images())  # the float32 model, bit for bit


def test_layers_whose_policy_is_not_a_float32_variable_one_are_left_with_the_reason():
    ids = keras.Input((3,), dtype="int32", name="ids")
    hashed = layers.Hashing(7, name="hash")(ids)
    x = layers.Embedding(7, 4, name="emb")(hashed)
    x = layers.Dense(2, dtype="float64", name="double")(layers.Flatten()(x))
    model = keras.Model(ids, x)
    result = keras_rewrite.rewrite_with_report(model, [passes.SetDtypePolicy("mixed_float16")])
    skipped = changes(result, "skipped")
    assert set(skipped) == {"hash", "double"}
    assert "policy 'int64'" in skipped["hash"] and "policy 'float64'" in skipped["double"]
    got = policies(result.model)
    assert got["hash"] == "int64" and got["double"] == "float64"
    assert got["emb"] == "mixed_float16"
    assert str(result.model.inputs[0].dtype) == "int32"  # the input keeps its data dtype
    same_weights = [np.array_equal(np.asarray(u), np.asarray(v))
                    for u, v in zip(model.weights, result.model.weights)]
    assert all(same_weights) and str(result.model.get_layer("double").kernel.dtype) == "float64"


def test_a_graph_only_changes_configs_and_asks_for_every_weight():
    graph = to_graph(classifier())
    result = passes.SetDtypePolicy("mixed_float16")(graph)
    validate(graph)
    assert result.modified and result.outputs_unchanged is False
    assert graph.nodes["conv"]["spec"].config["dtype"] == keras.dtype_policies.serialize(
        keras.DTypePolicy("mixed_float16"))
    assert graph.nodes["img"]["spec"].config["dtype"] == "float32"
    assert graph.graph["weights_must_fit"] == ["SetDtypePolicy"]


class ComputeDtypeScale(layers.Layer):
    """A custom layer whose variable follows its compute dtype (float16 under mixed_float16)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones", dtype=self.compute_dtype)

    def call(self, x):
        return x * self.scale


def test_a_layer_whose_config_would_build_other_variables_is_copied_with_the_policy(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, ComputeDtypeScale(name="scale")(layers.Dense(3)(inputs)))
    model.get_layer("scale").scale.assign(1.5)
    result = keras_rewrite.rewrite_with_report(model,
                                               [passes.SetDtypePolicy("mixed_float16")])
    scale = result.model.get_layer("scale")
    # From its config it would build a float16 variable; it is copied instead, its float32
    # variable kept bit for bit, and computes in float16.
    how = result.report.layer("scale").how
    assert how.startswith("object copy: re-created from its config it builds other")
    assert how.endswith("dtype policy mixed_float16 set on the copy")
    assert scale.dtype_policy.name == "mixed_float16"
    assert str(scale.scale.dtype) == "float32" and float(scale.scale.numpy()) == 1.5
    x = RNG.standard_normal((2, 3)).astype("float32")
    np.testing.assert_allclose(predict(result.model, x)[0], predict(model, x)[0], atol=1e-2)
    assert str(result.model.outputs[0].dtype) == "float16"


class NoConfigBlock(layers.Layer):
    """A custom layer whose get_config fails (like KerasHub's LlamaTransformerDecoder), with a
    sub-layer that gets its policy and a softmax built float32 on purpose."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.proj = layers.Dense(3, dtype=self.dtype_policy)
        self.softmax = layers.Softmax(dtype="float32")

    def call(self, x):
        return self.softmax(self.proj(x))

    def get_config(self):
        raise NotImplementedError("no config")


def test_a_layer_without_a_config_is_copied_with_the_policy_set_on_it_and_its_sublayers():
    inputs = keras.Input((4,))
    x = NoConfigBlock(name="block")(layers.Dense(4, name="pre")(inputs))
    model = keras.Model(inputs, layers.Dense(2, name="out")(x))
    result = keras_rewrite.rewrite_with_report(model, [passes.SetDtypePolicy("mixed_float16")])
    block = result.model.get_layer("block")
    assert block.dtype_policy.name == block.proj.dtype_policy.name == "mixed_float16"
    assert block.softmax.dtype_policy.name == "float32"  # built float32 on purpose: kept
    assert result.report.layer("block").how.startswith("object copy: get_config() fails")
    assert "its get_config() fails" in changes(result, "set_dtype_policy")["block"]
    same_float32_weights(model, result.model)
    x = RNG.standard_normal((2, 4)).astype("float32")
    np.testing.assert_allclose(predict(result.model, x)[0], predict(model, x)[0], atol=1e-2)
    assert model.get_layer("block").dtype_policy.name == "float32"  # the original untouched


@pytest.mark.parametrize("bad", ["float16", "bfloat16", "mixed", None, 16])
def test_a_policy_that_would_not_keep_float32_variables_is_refused(bad):
    with pytest.raises(PassError, match=r"Expected policy to be one of \['mixed_bfloat16', "
                                        r"'mixed_float16', 'float32'\].*Received: policy="):
        passes.SetDtypePolicy(bad)


def test_config_round_trip_and_registry():
    p = passes.SetDtypePolicy("mixed_float16")
    assert passes.SetDtypePolicy(**json.loads(json.dumps(p.get_config()))).policy == p.policy
    assert passes.SetDtypePolicy is keras_rewrite.passes.registry.passes()["set_dtype_policy"]
    assert keras_rewrite.passes.resolve_passes(["set_dtype_policy"])[0].policy == "mixed_bfloat16"


def test_a_compiled_model_gets_loss_scaling_for_float16_and_trains_one_step():
    model = classifier()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    x, y = images(8), RNG.integers(0, 5, 8)
    half = keras_rewrite.rewrite(model, [passes.SetDtypePolicy("mixed_float16")])
    assert isinstance(half.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(half.optimizer.inner_optimizer, keras.optimizers.SGD)
    before = np.asarray(half.get_layer("conv").kernel)
    history = half.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = np.asarray(half.get_layer("conv").kernel)
    assert str(half.get_layer("conv").kernel.dtype) == "float32"
    assert not np.array_equal(before, after)  # the step updated the float32 variables
    np.testing.assert_array_equal(np.asarray(model.get_layer("conv").kernel), before)
    brain = keras_rewrite.rewrite(model, [passes.SetDtypePolicy("mixed_bfloat16")])
    assert isinstance(brain.optimizer, keras.optimizers.SGD)  # bfloat16 needs no loss scaling
    back = keras_rewrite.rewrite(half, [passes.SetDtypePolicy("float32")])
    assert type(back.optimizer) is keras.optimizers.SGD  # unwrapped again


# ------------------------------------------------------------------------- real models


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ResNet50", "MobileNetV2", "EfficientNetB0"])
@pytest.mark.parametrize("policy", MIXED)
def test_keras_applications_equal_keras_own_mixed_build(name, policy, tmp_path):
    build = getattr(keras.applications, name)
    model = build(weights=None, input_shape=(64, 64, 3), classes=10)
    result = keras_rewrite.rewrite_with_report(model, [passes.SetDtypePolicy(policy)])
    new = result.model
    assert set(changes(result, "kept_float32")) == {"predictions"}
    assert str(new.outputs[0].dtype) == "float32"
    assert new.get_layer("predictions").dtype_policy.name == "float32"
    assert changes(result, "skipped") == {}
    same_float32_weights(model, new)
    keras.mixed_precision.set_global_policy(policy)
    try:
        native = build(weights=None, input_shape=(64, 64, 3), classes=10)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    native.set_weights(model.get_weights())
    x = RNG.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    features = keras.Model(new.inputs, new.layers[-2].output)
    native_features = keras.Model(native.inputs, native.layers[-2].output)
    got = predict(features, x)[0]
    assert str(got.dtype) == policy.split("_")[1]
    np.testing.assert_array_equal(got, predict(native_features, x)[0])
    np.testing.assert_allclose(predict(new, x)[0], predict(model, x)[0],
                               atol=TOLERANCE[policy])
    back = reloaded(new, tmp_path)
    assert policies(back) == policies(new)
    assert_same_predictions(new, back, x)


@pytest.mark.slow
def test_a_kerashub_backbone_saves_its_policies_as_a_recipe(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=16)
    result = keras_rewrite.rewrite_with_report(backbone,
                                               [passes.SetDtypePolicy("mixed_bfloat16")])
    new = result.model
    assert isinstance(new, keras_hub.models.BertBackbone) and new.recipe is not None
    assert new.dtype_policy.name == "mixed_bfloat16"
    assert new.recipe["passes"] == [{"class": "SetDtypePolicy",
                                     "config": {"policy": "mixed_bfloat16"}}]
    same_float32_weights(backbone, new)
    x = {"token_ids": RNG.integers(0, 50, (2, 8)).astype("int32"),
         "segment_ids": np.zeros((2, 8), "int32"), "padding_mask": np.ones((2, 8), "int32")}
    out, ref = predict(new, x), predict(backbone, x)
    for u, v in zip(out, ref):
        np.testing.assert_allclose(u, v, atol=0.1)
    back = reloaded(new, tmp_path)
    assert isinstance(back, keras_hub.models.BertBackbone)
    assert policies(back) == policies(new) and back.dtype_policy.name == "mixed_bfloat16"
    assert policies(back)["transformer_layer_0"] == "mixed_bfloat16"
    assert_same_predictions(new, back, x)


def _effective(layer):
    """(quantization mode, compute dtype) a layer computes with (a DTypePolicyMap looked up
    at its path, as Keras does)."""
    policy = layer.dtype_policy
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        policy = policy[layer.path] if layer.path else policy.default_policy
    return policy.quantization_mode, policy.compute_dtype


@pytest.mark.slow
def test_a_loaded_quantized_backbone_whose_layers_hold_a_policy_map_computes_mixed(tmp_path):
    """Keras gives every layer of a quantized KerasHub model loaded from a file the file's
    DTypePolicyMap: its float layers resolve to the map's default, and get the new policy;
    the quantized ones keep theirs."""
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(2)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=16)
    backbone.quantize("int8")
    loaded = reloaded(backbone, tmp_path, "int8.keras")
    assert isinstance(loaded.get_layer("position_embedding").dtype_policy,
                      keras.dtype_policies.DTypePolicyMap)
    result = keras_rewrite.rewrite_with_report(loaded, [passes.SetDtypePolicy("mixed_bfloat16")])
    new = result.model
    got = {layer.name: _effective(layer) for layer in all_layers(new)}
    assert got["position_embedding"] == (None, "bfloat16")
    assert got["layer_norm"] == (None, "bfloat16")
    assert got["token_embedding"] == ("int8", "float32")  # quantized: left, with the reason
    assert "int8" in changes(result, "skipped")["token_embedding"]
    assert new.dtype_policy.name == "mixed_bfloat16"
    same_float32_weights(loaded, new)
    x = {"token_ids": RNG.integers(0, 50, (2, 8)).astype("int32"),
         "padding_mask": np.ones((2, 8), "int32")}
    out = np.asarray(new(x))
    assert out.dtype == np.float32 or str(out.dtype) == "bfloat16"
    np.testing.assert_allclose(np.asarray(out, "float32"), np.asarray(loaded(x), "float32"),
                               atol=0.1)
    # Keras 3.15 cannot save a quantized KerasHub model it loaded (its int8 embedding saves a
    # None scale): the same for the loaded model itself, so not a loss of the rewrite.
    with pytest.raises(ValueError, match="Invalid dtype"):
        loaded.save(tmp_path / "again.keras")


@pytest.mark.slow
def test_a_masked_lm_head_is_kept_float32_and_stays_tied_to_the_mixed_embedding(tmp_path):
    """KerasHub's MaskedLMHead cannot compute in bfloat16 (built natively in mixed precision
    it fails too): kept float32 with the reason, holding the backbone's token embedding."""
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(2)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=16)
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    result = keras_rewrite.rewrite_with_report(model, [passes.SetDtypePolicy("mixed_bfloat16")])
    new = result.model
    head = new.get_layer("mlm_head")
    assert head.dtype_policy.name == "float32"
    assert "MaskedLMHead adds its float32 bias" in changes(result, "kept_float32")["mlm_head"]
    assert head.token_embedding is new.backbone.token_embedding  # one variable, as before
    assert new.backbone.token_embedding.dtype_policy.name == "mixed_bfloat16"
    assert len(new.weights) == len(model.weights)
    x = {"token_ids": RNG.integers(0, 50, (2, 8)).astype("int32"),
         "segment_ids": np.zeros((2, 8), "int32"), "padding_mask": np.ones((2, 8), "int32"),
         "mask_positions": np.array([[1, 3], [2, 5]], "int32")}
    out = np.asarray(new.predict(x, verbose=0))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.asarray(model.predict(x, verbose=0)), atol=0.1)
    back = reloaded(new, tmp_path)
    assert back.get_layer("mlm_head").dtype_policy.name == "float32"
    np.testing.assert_array_equal(np.asarray(back.predict(x, verbose=0)), out)


def test_lookup_layers_are_left_float32_with_the_reason_and_the_report_says_so():
    # Keras builds StringLookup/IntegerLookup with a float32 policy from any config: a report
    # saying "float32 -> mixed_bfloat16" for them would not be true of the rebuilt model.
    inputs = keras.Input((1,), dtype="string")
    ids = layers.StringLookup(vocabulary=["a", "b"], name="lookup")(inputs)
    x = layers.Embedding(4, 2, name="emb")(ids)
    model = keras.Model(inputs, layers.Dense(1, name="head")(layers.Flatten()(x)))
    result = keras_rewrite.rewrite_with_report(model, [passes.SetDtypePolicy("mixed_bfloat16")])
    changes = {c.layer: c for c in result.report.passes[0].changes}
    assert changes["lookup"].action == "skipped"
    assert "vocabulary's dtype" in changes["lookup"].detail
    assert result.model.get_layer("lookup").dtype_policy.name == "float32"
    assert result.model.get_layer("emb").dtype_policy.name == "mixed_bfloat16"
