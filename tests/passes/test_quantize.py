"""The `quantize` pass, and the other passes and files on quantized and LoRA models (issue 16):
every result is compared with what Keras itself gives, variable by variable and bit for bit."""
import warnings
from unittest import mock

import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.errors import PassError
from keras_rewrite.passes.quantize import Quantize

X = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")


def quiet_quantize(model, mode, filters=None):
    """Model.quantize without Keras's gc.collect() per deleted kernel (0.3 s each)."""
    with warnings.catch_warnings(), mock.patch("gc.collect", lambda *args: 0):
        warnings.simplefilter("ignore")
        model.quantize(mode, filters=filters)
    return model


def dense_model(seed=1):
    keras.utils.set_random_seed(seed)
    x = keras.Input((6,))
    h = layers.Dense(8, activation="relu", name="d1")(x)
    h = layers.EinsumDense("ab,bc->ac", output_shape=5, bias_axes="c", name="ed")(h)
    return keras.Model(x, layers.Dense(3, name="d2")(h))


def keras_quantized(model, mode, filters=None):
    """What Keras's own Model.quantize gives on a copy of `model`."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return quiet_quantize(copy, mode, filters)


def variables_of(model):
    return [(v.path, str(v.dtype), tuple(v.shape), bool(v.trainable),
             np.asarray(v.numpy()).tobytes()) for v in model.weights]


def policies_of(model):
    return [(l.name, l.dtype_policy.name, getattr(l, "quantization_mode", None))
            for l in model._flatten_layers(include_self=False, recursive=True)
            if not isinstance(l, layers.InputLayer)]  # where Keras tracks inputs varies


def predict(model, x=X):
    return np.asarray(model.predict(x, verbose=0))


@pytest.mark.parametrize("mode", ["int8", "int4", "float8"])
def test_the_pass_gives_what_model_quantize_gives_bit_for_bit(mode):
    model = dense_model()
    before, expected_float = variables_of(model), predict(model)
    result = keras_rewrite.rewrite_with_report(model, [Quantize(mode)])
    reference = keras_quantized(model, mode)
    assert variables_of(result.model) == variables_of(reference)
    assert policies_of(result.model) == policies_of(reference)
    np.testing.assert_array_equal(predict(result.model), predict(reference))
    # The original is not touched.
    assert variables_of(model) == before
    np.testing.assert_array_equal(predict(model), expected_float)
    (report,) = result.report.passes
    assert [(c.layer, c.action) for c in report.changes] == [
        ("d1", "quantized"), ("ed", "quantized"), ("d2", "quantized")]
    assert report.outputs_unchanged is None
    assert result.report.outputs_unchanged is None
    # It changed something: the predictions move by the rounding, and not by much.
    largest = np.abs(predict(result.model) - expected_float).max()
    assert 0 < largest < 0.5


@pytest.mark.parametrize("filters", ["d1|ed", ["^d2$", "^ed"], "nothing_matches"])
def test_filters_select_layers_as_model_quantize_does(filters):
    model = dense_model()
    result = keras_rewrite.rewrite_with_report(model, [Quantize("int8", filters=filters)])
    reference = keras_quantized(model, "int8", filters)
    assert policies_of(result.model) == policies_of(reference)
    assert variables_of(result.model) == variables_of(reference)
    np.testing.assert_array_equal(predict(result.model), predict(reference))
    assert result.report.passes[0].modified is (filters != "nothing_matches")


def test_a_callable_filter_works_but_is_not_saved_in_a_recipe():
    model = dense_model()
    pass_ = Quantize("int8", filters=lambda layer: layer.name == "ed")
    new = keras_rewrite.rewrite(model, [pass_])
    assert [m for _, _, m in policies_of(new)] == [None, "int8", None]
    assert pass_.get_config() is None


def test_already_quantized_layers_are_skipped_with_the_reason():
    model = quiet_quantize(dense_model(), "int8", filters="d1")
    result = keras_rewrite.rewrite_with_report(model, ["quantize"])
    changes = {c.layer: c for c in result.report.passes[0].changes}
    assert changes["d1"].action == "skipped"
    assert "already quantized (dtype policy 'int8_from_float32')" in changes["d1"].detail
    assert changes["ed"].action == changes["d2"].action == "quantized"
    reference = quiet_quantize(quiet_quantize(dense_model(), "int8", filters="d1"), "int8",
                               filters="ed|d2")
    assert variables_of(result.model) == variables_of(reference)
    np.testing.assert_array_equal(predict(result.model), predict(reference))


def test_a_mode_keras_refuses_for_a_layer_becomes_a_skip_in_the_report():
    keras.utils.set_random_seed(2)
    x = keras.Input((5,), dtype="int32")
    h = layers.Embedding(20, 8, name="emb")(x)
    model = keras.Model(x, layers.Dense(2, name="head")(layers.GlobalAveragePooling1D()(h)))
    result = keras_rewrite.rewrite_with_report(model, [Quantize("float8")])
    changes = {c.layer: c for c in result.report.passes[0].changes}
    assert changes["emb"].action == "skipped"
    assert "Keras refuses to quantize Embedding to float8" in changes["emb"].detail
    assert changes["head"].action == "quantized"
    assert result.model.get_layer("emb").quantization_mode is None
    tokens = np.arange(10).reshape(2, 5).astype("int32")
    reference = keras_quantized(model, "float8")
    np.testing.assert_array_equal(predict(result.model, tokens), predict(reference, tokens))


def test_sub_layers_of_a_custom_layer_are_quantized_and_reported_by_path():
    @keras.saving.register_keras_serializable(package="quantize_test")
    class Pair(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = layers.Dense(4, name="inner")

        def build(self, shape):
            self.inner.build(shape)

        def call(self, x):
            return self.inner(x)

    keras.utils.set_random_seed(3)
    x = keras.Input((6,))
    model = keras.Model(x, layers.Dense(2, name="out")(Pair(name="pair")(x)))
    result = keras_rewrite.rewrite_with_report(model, ["quantize"])
    changes = {c.layer: c.action for c in result.report.passes[0].changes}
    assert changes == {"pair/inner": "quantized", "out": "quantized"}
    reference = keras_quantized(model, "int8")
    assert variables_of(result.model) == variables_of(reference)
    np.testing.assert_array_equal(predict(result.model), predict(reference))


def test_bad_options_are_refused_by_name():
    with pytest.raises(PassError, match=r"Expected mode to be one of \['int8', 'int4', "
                                        r"'float8'\].*Received: mode='gptq'"):
        Quantize("gptq")
    with pytest.raises(PassError, match="Expected filters to be None, a regex string"):
        Quantize("int8", filters=3)
    with pytest.raises(PassError, match=r"valid regular expressions. Received: '\('"):
        Quantize("int8", filters="(")


def test_the_pass_is_registered_by_its_short_name_with_its_options():
    from keras_rewrite.passes import SHORT_NAMES, registry

    assert SHORT_NAMES["quantize"] == "Quantize"
    assert dict(registry.options(Quantize)) == {"mode": "int8", "filters": None}
    assert isinstance(keras_rewrite.passes.resolve_passes(["quantize"])[0], Quantize)
    assert Quantize("int4", "d1").get_config() == {"mode": "int4", "filters": "d1"}


def conv_model():
    keras.utils.set_random_seed(5)
    x = keras.Input((8, 8, 3))
    h = layers.Conv2D(4, 3, name="conv")(x)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.ReLU(name="relu")(h)
    h = layers.Flatten(name="flat")(h)
    h = layers.Dense(6, name="fc")(h)
    h = layers.BatchNormalization(name="bn_fc")(h)
    h = layers.Dropout(0.5, name="drop")(h)
    model = keras.Model(x, layers.Dense(3, name="head")(h))
    rng = np.random.default_rng(5)
    for bn in ("bn", "bn_fc"):
        layer = model.get_layer(bn)
        layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape)
                                     .astype("float32"))
    return model


@pytest.mark.parametrize("order", [["fold_batchnorm", "strip_inference", "quantize"],
                                   ["quantize", "fold_batchnorm", "strip_inference"]])
def test_it_composes_with_fold_batchnorm_and_strip_inference(order):
    model = conv_model()
    x = np.random.default_rng(6).normal(size=(2, 8, 8, 3)).astype("float32")
    result = keras_rewrite.rewrite_with_report(model, order)
    new = result.model
    assert [l.name for l in new.layers][1:] == ["conv", "relu", "flat", "fc", "head"]
    assert {l.name: l.quantization_mode for l in new.layers
            if getattr(l, "quantization_mode", None)} == {"fc": "int8", "head": "int8"}
    # Keras has no Conv2D.quantize: conv stays float
    # Exactly Keras's own quantize of the folded, stripped model.
    folded = keras_rewrite.rewrite(model, ["fold_batchnorm", "strip_inference"])
    reference = keras_quantized(folded, "int8")
    assert variables_of(new) == variables_of(reference)
    np.testing.assert_array_equal(predict(new, x), predict(reference, x))
    assert np.abs(predict(new, x) - predict(model, x)).max() < 0.5
    quantized = [c.layer for c in result.report.passes[order.index("quantize")].changes
                 if c.action == "quantized"]
    assert sorted(quantized) == ["fc", "head"]


# ---------------------------------------------------------------- refusals on quantized/LoRA


def bn_after_dense(how):
    keras.utils.set_random_seed(7)
    x = keras.Input((6,))
    h = layers.Dense(4, name="fc")(x)
    model = keras.Model(x, layers.BatchNormalization(name="bn")(h))
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(4, 0.3, "float32"))
    bn.moving_variance.assign(np.full(4, 2.0, "float32"))
    if how == "int8":
        quiet_quantize(model, "int8")
    else:
        model.get_layer("fc").enable_lora(2)
        model.get_layer("fc").lora_kernel_b.assign(np.full((2, 4), 0.25, "float32"))
    return model


@pytest.mark.parametrize("how, reason", [("int8", "'fc' is int8-quantized"),
                                         ("lora", "'fc' is LoRA-enabled (lora_rank=2)")])
def test_fold_batchnorm_refuses_a_quantized_or_lora_layer_with_the_reason(how, reason):
    model = bn_after_dense(how)
    variables, expected = variables_of(model), predict(model)
    result = keras_rewrite.rewrite_with_report(model, ["fold_batchnorm"])
    (change,) = result.report.passes[0].changes
    assert change.action == "skipped" and reason in change.detail
    assert not result.report.passes[0].modified
    assert [l.name for l in result.model.layers][1:] == ["fc", "bn"]
    assert variables_of(result.model) == variables
    np.testing.assert_array_equal(predict(result.model), expected)


def test_fold_batchnorm_after_quantize_folds_first_then_quantizes():
    model = bn_after_dense("int8")  # only to get the shape; use a float one
    keras.utils.set_random_seed(7)
    x = keras.Input((6,))
    model = keras.Model(x, layers.BatchNormalization(name="bn")(layers.Dense(4, name="fc")(x)))
    model.get_layer("bn").moving_variance.assign(np.full(4, 2.0, "float32"))
    new = keras_rewrite.rewrite(model, ["quantize", "fold_batchnorm"])
    reference = keras_quantized(keras_rewrite.rewrite(model, ["fold_batchnorm"]), "int8")
    assert variables_of(new) == variables_of(reference)
    np.testing.assert_array_equal(predict(new), predict(reference))


def test_set_dtype_policy_leaves_quantized_layers_with_the_reason():
    model = quiet_quantize(dense_model(), "int8", filters="d1")
    result = keras_rewrite.rewrite_with_report(model, ["set_dtype_policy"])
    changes = {c.layer: c for c in result.report.passes[0].changes}
    assert changes["d1"].action == "skipped"
    assert "'int8_from_float32' (quantized or per-path policies)" in changes["d1"].detail
    new = result.model
    assert new.get_layer("d1").dtype_policy.name == "int8_from_float32"
    assert new.get_layer("ed").dtype_policy.name == "mixed_bfloat16"
    d1_old = [np.asarray(v.numpy()).tobytes() for v in model.get_layer("d1").weights]
    assert [np.asarray(v.numpy()).tobytes() for v in new.get_layer("d1").weights] == d1_old


def test_l2_skips_quantized_kernels_with_the_reason_and_adds_no_loss():
    model = quiet_quantize(dense_model(), "int8")
    result = keras_rewrite.rewrite_with_report(model, ["l2"])
    for change in result.report.passes[0].changes:
        assert change.action == "skipped"
        assert "int8-quantized (int8 values with a scale, not trainable)" in change.detail
    assert result.model.losses == []
    np.testing.assert_array_equal(predict(result.model), predict(model))
    assert variables_of(result.model) == variables_of(model)


def test_l2_on_float8_kernels_applies():
    model = quiet_quantize(dense_model(), "float8")
    result = keras_rewrite.rewrite_with_report(model, ["l2"])
    assert {c.action for c in result.report.passes[0].changes} == {"added_regularizer"}
    assert len(result.model.losses) == 3


@pytest.mark.parametrize("quantized", [False, True])
def test_l2_leaves_lora_layers_exact_with_the_reason(quantized):
    model = dense_model()
    if quantized:
        quiet_quantize(model, "int8", filters="d2")
    model.get_layer("d2").enable_lora(2)
    model.get_layer("d2").lora_kernel_b.assign(np.full((2, 3), 0.25, "float32"))
    result = keras_rewrite.rewrite_with_report(model, ["l2"])
    changes = {c.layer: c for c in result.report.passes[0].changes}
    assert changes["d2"].action == "skipped"
    assert "has LoRA (rank 2" in changes["d2"].detail
    assert "another penalty than L2 on the kernel" in changes["d2"].detail
    assert [c.layer for c in result.report.passes[0].changes].count("d2") == 1
    # The adapter is kept as it was: A and B by value, the kernel frozen, A and B trainable.
    assert variables_of(result.model.get_layer("d2")) == variables_of(model.get_layer("d2"))
    np.testing.assert_array_equal(predict(result.model), predict(model))
    assert [v.path for v in result.model.trainable_weights] == \
        [v.path for v in model.trainable_weights]


# ---------------------------------------------------------------- files


def einsum_model():
    keras.utils.set_random_seed(8)
    x = keras.Input((6,))
    h = layers.EinsumDense("ab,bc->ac", output_shape=5, bias_axes="c", name="ed")(x)
    return keras.Model(x, layers.Dense(3, name="d")(layers.ReLU()(h)))


def lora_model():
    model = dense_model()
    for name in ("d1", "d2"):
        layer = model.get_layer(name)
        layer.enable_lora(2)
        layer.lora_kernel_b.assign(np.full(layer.lora_kernel_b.shape, 0.25, "float32"))
    return model


@pytest.mark.parametrize("build, passes", [
    (dense_model, ["quantize"]), (einsum_model, ["quantize"]),
    (dense_model, ["strip_inference", "quantize"])])
def test_a_rewritten_int8_model_saves_and_reloads_bit_exact(build, passes, tmp_path):
    new = keras_rewrite.rewrite(build(), passes)
    path = tmp_path / "q.keras"
    new.save(path)
    reloaded = keras.saving.load_model(path)
    assert variables_of(reloaded) == variables_of(new)
    assert policies_of(reloaded) == policies_of(new)
    np.testing.assert_array_equal(predict(reloaded), predict(new))


def test_a_rewritten_lora_model_saves_and_reloads_as_keras_s_own_file_does(tmp_path):
    model = lora_model()
    new = keras_rewrite.rewrite(model, ["strip_inference"])
    assert variables_of(new) == variables_of(model)
    new.save(tmp_path / "new.keras")
    model.save(tmp_path / "own.keras")
    reloaded = keras.saving.load_model(tmp_path / "new.keras")
    own = keras.saving.load_model(tmp_path / "own.keras")
    # Keras saves a LoRA layer merged (A @ B added to the kernel, A and B zero): the rewrite's
    # file reloads exactly as Keras's own file of the original does.
    assert variables_of(reloaded) == variables_of(own)
    np.testing.assert_array_equal(predict(reloaded), predict(own))
    np.testing.assert_allclose(predict(reloaded), predict(model), atol=1e-5)


def test_convert_works_on_a_saved_int8_model_file(tmp_path):
    from keras_rewrite.cli import main

    model = quiet_quantize(dense_model(), "int8")
    src, dst = tmp_path / "int8.keras", tmp_path / "out.keras"
    model.save(src)
    assert main(["convert", str(src), "-o", str(dst), "--pass", "l2",
                 "--pass", "strip_inference"]) == 0
    reloaded = keras.saving.load_model(dst)
    assert variables_of(reloaded) == variables_of(keras.saving.load_model(src))
    np.testing.assert_array_equal(predict(reloaded), predict(model))


def test_convert_with_the_quantize_pass_from_the_command_line(tmp_path):
    from keras_rewrite.cli import main

    model = dense_model()
    src, dst = tmp_path / "float.keras", tmp_path / "int8.keras"
    model.save(src)
    assert main(["convert", str(src), "-o", str(dst), "--pass", "quantize:mode=int8"]) == 0
    reloaded = keras.saving.load_model(dst)
    reference = keras_quantized(model, "int8")
    assert variables_of(reloaded) == variables_of(reference)
    np.testing.assert_array_equal(predict(reloaded), predict(reference))
    assert main(["convert", str(src), "-o", str(tmp_path / "bad.keras"), "--pass",
                 "quantize:mode=int2"]) != 0
    assert not (tmp_path / "bad.keras").exists()


# ---------------------------------------------------------------- a KerasHub backbone


@pytest.mark.slow
def test_the_pass_on_a_gpt2_backbone_gives_what_backbone_quantize_gives(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")

    def backbone():
        keras.utils.set_random_seed(4)
        return keras_hub.models.GPT2Backbone(
            vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
            max_sequence_length=16)

    x = {"token_ids": (np.arange(16).reshape(2, 8) * 3) % 50,
         "padding_mask": np.ones((2, 8), "int32")}
    original = backbone()
    before = variables_of(original)
    new = keras_rewrite.rewrite(original, ["quantize"])
    reference = quiet_quantize(backbone(), "int8")
    assert variables_of(original) == before
    assert variables_of(new) == variables_of(reference)
    # Automatic sub-layer names (dropout_1) differ between two builds: policies by position.
    assert [p[1:] for p in policies_of(new)] == [p[1:] for p in policies_of(reference)]
    np.testing.assert_array_equal(np.asarray(new.predict(x, verbose=0)),
                                  np.asarray(reference.predict(x, verbose=0)))
    new.save(tmp_path / "q.keras")
    reloaded = keras.saving.load_model(tmp_path / "q.keras")
    np.testing.assert_array_equal(np.asarray(reloaded.predict(x, verbose=0)),
                                  np.asarray(reference.predict(x, verbose=0)))
