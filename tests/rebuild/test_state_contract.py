"""State beyond the graph: quantized, LoRA and partly frozen models come back as they were, or
the rewrite raises `FidelityError` naming the layer (keras_rewrite.verify.fidelity)."""
import warnings

import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.errors import FidelityError, RebuildError
from keras_rewrite.verify import layer_state


def variables_of(model):
    """model.weights in order: path, dtype, shape, trainable, the exact bytes."""
    return [(v.path, str(v.dtype), tuple(v.shape), bool(v.trainable),
             np.asarray(v.numpy()).tobytes()) for v in model.weights]


def layers_of(model):
    """Every layer at every depth, by position: class, policy, quantization, trainable, LoRA."""
    return [(type(l).__name__, l.dtype_policy.name, getattr(l, "quantization_mode", None),
             bool(l.trainable), getattr(l, "lora_rank", None)
             if getattr(l, "lora_enabled", False) else None)
            for l in model._flatten_layers(include_self=True, recursive=True)]


@keras.saving.register_keras_serializable(package="state_test")
class Block(layers.Layer):
    """A custom layer with two Dense sub-layers (what KerasHub's blocks look like)."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense_a = layers.Dense(units, name="dense_a")
        self.dense_b = layers.Dense(units, name="dense_b")

    def build(self, shape):
        self.dense_a.build(shape)
        self.dense_b.build((*shape[:-1], self.units))

    def call(self, x):
        return self.dense_b(keras.ops.relu(self.dense_a(x)))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def dense_model():
    keras.utils.set_random_seed(1)
    x = keras.Input((6,))
    h = layers.Dense(8, activation="relu", name="d1")(x)
    h = layers.EinsumDense("ab,bc->ac", output_shape=5, bias_axes="c", name="ed")(h)
    h = Block(4, name="block")(h)
    return keras.Model(x, layers.Dense(3, name="d2")(h))


def embedding_model():
    keras.utils.set_random_seed(2)
    x = keras.Input((5,), dtype="int32")
    h = layers.Embedding(20, 8, name="emb")(x)
    h = Block(4, name="block")(h)
    return keras.Model(x, layers.Dense(2, name="head")(layers.GlobalAveragePooling1D()(h)))


def variant(model, how):
    if how in ("int8", "int4", "float8"):
        model.quantize(how)
    elif how == "int8_filtered":
        model.quantize("int8", filters="d1|block")
    elif how == "lora":
        model.get_layer("d2" if "d2" in [l.name for l in model.layers] else "head").enable_lora(2)
        model.get_layer("block").dense_a.enable_lora(2)
    elif how == "qlora":
        model.quantize("int8")
        model.get_layer("block").dense_a.enable_lora(2)
    elif how == "frozen_sublayer":
        model.get_layer("block").dense_a.trainable = False
    # A trained adapter: make lora_kernel_b non-zero, so the adapter changes predictions.
    for v in model.weights:
        if v.path.endswith("lora_kernel_b"):
            v.assign(np.full(v.shape, 0.25, "float32"))
    return model


def data(model):
    rng = np.random.default_rng(0)
    if model.inputs[0].dtype == "int32":
        return rng.integers(0, 20, (4, 5)).astype("int32")
    return rng.normal(size=(4, 6)).astype("float32")


VARIANTS = ["plain", "int8", "int4", "float8", "int8_filtered", "lora", "qlora",
            "frozen_sublayer"]


@pytest.mark.parametrize("build", [dense_model, embedding_model])
@pytest.mark.parametrize("how", VARIANTS)
def test_identity_keeps_variables_policies_trainable_flags_and_predictions(build, how):
    if build is embedding_model and how == "float8":
        pytest.skip("Keras has no float8 Embedding (quantize leaves it float32)")
    model = variant(build(), how)
    x = data(model)
    new = keras_rewrite.rewrite(model, [])
    assert variables_of(new) == variables_of(model)
    assert layers_of(new) == layers_of(model)
    np.testing.assert_array_equal(new.predict(x, verbose=0), model.predict(x, verbose=0))
    # The copy is independent: its variables are not the original's.
    assert not {id(v) for v in new.weights} & {id(v) for v in model.weights}


@pytest.mark.parametrize("how", ["lora", "qlora", "frozen_sublayer", "int8"])
def test_one_fit_step_trains_exactly_the_variables_the_original_trains(how):
    model = variant(dense_model(), how)
    new = keras_rewrite.rewrite(model, [])
    x = data(model)
    y = np.ones((4, 3), "float32")

    def trained(m):
        before = [np.asarray(v.numpy()) for v in m.weights]
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        m.fit(x, y, epochs=1, batch_size=4, verbose=0)
        return [v.path for v, b in zip(m.weights, before)
                if not np.array_equal(np.asarray(v.numpy()), b)]

    expected = trained(model)
    assert expected  # something trains
    assert trained(new) == expected
    if how == "frozen_sublayer":
        assert not any(p.startswith("block/dense_a/") for p in expected)


@pytest.mark.parametrize("how", ["int8", "lora", "frozen_sublayer"])
def test_l2_keeps_predictions_and_the_trainable_set(how):
    model = variant(dense_model(), how)
    x = data(model)
    new = keras_rewrite.rewrite(model, ["l2"])
    np.testing.assert_array_equal(new.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [v.path for v in new.trainable_weights] == [v.path for v in model.trainable_weights]
    assert layers_of(new)[1:] == layers_of(model)[1:]  # the model: a RewrittenFunctional


@keras.saving.register_keras_serializable(package="state_test")
class LossyScale(layers.Layer):
    """A layer whose own save/load protocol is not exact (it stores its weight as float16):
    a rebuild through it would change the model, so the rewrite must refuse."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="random_normal", name="w")

    def call(self, x):
        return x * self.w

    def save_own_variables(self, store):
        store["0"] = np.asarray(self.w.numpy()).astype("float16")

    def load_own_variables(self, store):
        self.w.assign(np.asarray(store["0"]).astype("float32"))


def test_a_layer_that_cannot_be_carried_faithfully_is_a_fidelity_error_naming_it():
    keras.utils.set_random_seed(3)
    x = keras.Input((7,))
    model = keras.Model(x, layers.Dense(2)(LossyScale(name="lossy")(x)))
    model.get_layer("lossy").w.assign(np.full((7,), 1 / 3, "float32"))  # not a float16 value
    with pytest.raises(FidelityError, match=r"layer 'lossy' \(LossyScale\).*variable "
                                            r"'lossy/w' holds other values"):
        keras_rewrite.rewrite(model, [])


def test_a_layer_a_pass_changed_must_keep_the_values_it_carries():
    """`freeze` changes only the layer's trainable flag: its weight goes through the lossy
    protocol, and the proof of a changed layer compares what was carried bit for bit."""
    from keras_rewrite import surgery

    keras.utils.set_random_seed(3)
    x = keras.Input((7,))
    model = keras.Model(x, layers.Dense(2)(LossyScale(name="lossy")(x)))
    model.get_layer("lossy").w.assign(np.full((7,), 1 / 3, "float32"))
    with pytest.raises(FidelityError, match=r"layer 'lossy' \(LossyScale\): a pass changed it.*"
                                            r"'lossy/w' was carried over but holds other values"):
        surgery.freeze(model, ["lossy"])


def test_state_difference_names_what_would_be_lost():
    from keras_rewrite import _keras
    from keras_rewrite.verify import fidelity

    a, b = layers.Dense(3), layers.Dense(3)
    a.build((None, 4))
    b.build((None, 4))
    a.quantize("int8")
    text = fidelity.state_difference(layer_state.layer_state(a), layer_state.layer_state(b))
    assert "dtype policy 'int8_from_float32' in the original, 'float32' in the rewrite" in text


def gpt2(how):
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(4)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=16)
    if how in ("int8", "int4", "float8", "qlora"):
        backbone.quantize("int8" if how == "qlora" else how)
    if how in ("lora", "qlora"):
        backbone.enable_lora(2)
    return backbone


GPT2_X = {"token_ids": (np.arange(16).reshape(2, 8) * 3) % 50,
          "padding_mask": np.ones((2, 8), "int32")}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["int8", "int4", "float8", "lora", "qlora"])
def test_gpt2_backbone_identity_and_l2_keep_quantization_and_lora(how):
    backbone = gpt2(how)
    expected = np.asarray(backbone.predict(GPT2_X, verbose=0))
    same = keras_rewrite.rewrite(backbone, [])
    assert type(same) is type(backbone)
    assert variables_of(same) == variables_of(backbone)
    np.testing.assert_array_equal(np.asarray(same.predict(GPT2_X, verbose=0)), expected)
    regularized = keras_rewrite.rewrite(backbone, ["l2"])
    np.testing.assert_array_equal(np.asarray(regularized.predict(GPT2_X, verbose=0)), expected)
    assert ([v.path for v in regularized.trainable_weights]
            == [v.path for v in backbone.trainable_weights])
    assert variables_of(same) == variables_of(backbone)


def policies_of(model):
    """Every layer's policy object state: name, source name, quantization mode (finding F)."""
    return [(l.path, type(l.dtype_policy).__name__, l.dtype_policy.name,
             getattr(l.dtype_policy, "_source_name", None),
             getattr(l.dtype_policy, "quantization_mode", None))
            for l in model._flatten_layers(include_self=False, recursive=True)]


def quiet_quantize(model, mode, filters=None):
    """Model.quantize without Keras's gc.collect() per deleted kernel (0.3 s each)."""
    import warnings
    from unittest import mock
    with warnings.catch_warnings(), mock.patch("gc.collect", lambda *args: 0):
        warnings.simplefilter("ignore")
        model.quantize(mode, filters=filters)


@pytest.mark.slow
@pytest.mark.parametrize("passes", [["l2"], ["strip_inference"], []])
def test_a_rewrite_of_a_quantized_backbone_leaves_the_original_unchanged(passes):
    # Finding F: serializing the backbone for its recipe went through DTypePolicyMap.get_config,
    # which set the live policies' names to None.
    backbone = gpt2("plain")
    quiet_quantize(backbone, "int8")
    policies, names = policies_of(backbone), [l.name for l in backbone.layers]
    variables, expected = variables_of(backbone), backbone.predict(GPT2_X, verbose=0)
    assert any(p[2] == "int8_from_float32" for p in policies)
    new = keras_rewrite.rewrite(backbone, passes)
    assert policies_of(backbone) == policies
    assert [l.name for l in backbone.layers] == names
    assert variables_of(backbone) == variables
    np.testing.assert_array_equal(backbone.predict(GPT2_X, verbose=0), expected)
    np.testing.assert_array_equal(new.predict(GPT2_X, verbose=0), expected)


def test_policies_kept_restores_what_a_policy_map_renames():
    from keras.dtype_policies import DTypePolicyMap
    from keras_rewrite._keras import policies_kept

    model = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="d")])
    quiet_quantize(model, "int8")
    layer = model.get_layer("d")
    policy_map = DTypePolicyMap()
    policy_map["d"] = layer.dtype_policy
    with policies_kept(model):
        policy_map.get_config()
        assert layer.dtype_policy.name is None  # what Keras does, in place
    assert layer.dtype_policy.name == "int8_from_float32"
    assert layer.dtype_policy._source_name == "float32"


@pytest.mark.slow
def test_convert_accepts_a_saved_keras_hub_backbone_file(tmp_path):
    # Finding H: the reload check compared InputLayer positions, and a backbone (built by its
    # constructor, also when loaded) tracks its inputs last, the rewrite first.
    from keras_rewrite.cli import main
    from keras_rewrite.conversion import convert_file

    backbone = gpt2("plain")
    src, dst = tmp_path / "gpt2.keras", tmp_path / "gpt2_l2.keras"
    backbone.save(src)
    report = convert_file(src, tmp_path / "same.keras", [])
    assert report is not None and (tmp_path / "same.keras").exists()
    assert main(["convert", str(src), "-o", str(dst), "--pass", "l2"]) == 0
    reloaded = keras.saving.load_model(dst)
    np.testing.assert_array_equal(np.asarray(reloaded.predict(GPT2_X, verbose=0)),
                                  np.asarray(backbone.predict(GPT2_X, verbose=0)))


def test_the_reload_check_ignores_where_input_layers_are_tracked_but_not_a_reordering():
    from keras_rewrite.verify import compare_models

    def model(order, inputs_last):
        x = keras.Input((3,), name="x")
        layer = {n: layers.Dense(3, name=n) for n in "ab"}
        h = layer[order[1]](layer[order[0]](x))
        m = keras.Model(x, h)
        for n in "ab":
            layer[n].set_weights([np.eye(3, dtype="float32"), np.zeros(3, "float32")])
        if inputs_last:  # how a constructor-built model (a KerasHub backbone) tracks them
            m._layers = [l for l in m._layers if not isinstance(l, layers.InputLayer)] + [
                l for l in m._layers if isinstance(l, layers.InputLayer)]
        return m

    reference = model("ab", False)
    assert model("ab", True)._layers[-1].name == "x"
    assert compare_models(reference, model("ab", True)).differences == []
    (moved, *_) = compare_models(reference, model("ba", True)).differences
    assert str(moved) == "layer 'a': position expected after 'x', received after 'b'"


def test_the_value_proof_compares_bits_nan_and_signed_zero_included():
    from keras_rewrite.verify import fidelity

    a, b = layers.Dense(3), layers.Dense(3)
    a.build((None, 2))
    b.build((None, 2))
    kernel = np.array([[np.nan, -0.0, 1.0], [2.0, 3.0, 4.0]], "float32")
    a.kernel.assign(kernel)
    b.kernel.assign(kernel)
    assert fidelity.value_difference(a, b) is None  # NaN == NaN bit for bit
    b.kernel.assign(np.where(kernel == 0, 0.0, kernel).astype("float32"))  # -0.0 -> +0.0
    assert fidelity.value_difference(a, b) == f"variable '{a.kernel.path}' holds other values"
    b.kernel.assign(np.nextafter(kernel, np.float32(9)).astype("float32"))
    assert fidelity.value_difference(a, b) is not None
    # A model with NaN weights is still copied, not refused.
    x = keras.Input((2,))
    model = keras.Model(x, layers.Dense(3, name="d")(x))
    model.get_layer("d").kernel.assign(kernel)
    assert variables_of(keras_rewrite.rewrite(model, [])) == variables_of(model)


def test_the_value_proof_on_the_host_path_compares_bits_too(monkeypatch):
    from keras_rewrite.verify import fidelity

    monkeypatch.setattr(fidelity.keras.backend, "backend", lambda: "jax")  # the numpy path
    a, b = layers.Dense(2), layers.Dense(2)
    a.build((None, 2))
    b.build((None, 2))
    kernel = np.array([[np.nan, -0.0], [1.0, 2.0]], "float32")
    a.kernel.assign(kernel)
    b.kernel.assign(kernel)
    assert fidelity.value_difference(a, b) is None
    b.kernel.assign(np.abs(kernel))
    assert fidelity.value_difference(a, b) is not None


def test_a_copied_layer_quantized_later_leaves_the_original_alone():
    """Layer.__new__ wraps `quantize` in a closure over the instance: a copy must get its own."""
    import warnings
    from keras_rewrite.rebuild import layer_copy

    original = layers.Dense(4, name="d")
    original.build((None, 6))
    before = variables_of(keras.Sequential([keras.Input((6,)), original]))
    copy = layer_copy.copy_layer_object(original)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copy.quantize("int8")
    assert copy.quantization_mode == "int8" and original.quantization_mode is None
    assert [v.path for v in original.weights] == [p for p, *_ in before]


@keras.saving.register_keras_serializable(package="state_test")
class TiedHead(layers.Layer):
    """Holds another layer of the model (KerasHub's MaskedLMHead holds the token embedding)."""

    def __init__(self, embedding=None, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding or layers.Embedding(20, 8, name="emb")

    def call(self, x):
        return keras.ops.matmul(x, keras.ops.transpose(self.embedding.embeddings))

    def get_config(self):
        return {**super().get_config(), "embedding": keras.saving.serialize_keras_object(
            self.embedding)}

    @classmethod
    def from_config(cls, config):
        config["embedding"] = keras.saving.deserialize_keras_object(config["embedding"])
        return cls(**config)


def test_a_layer_holding_another_layer_of_the_model_shares_the_rebuilt_one():
    ids = keras.Input((5,), dtype="int32")
    embedding = layers.Embedding(20, 8, name="emb")
    model = keras.Model(ids, TiedHead(embedding, name="head")(embedding(ids)))
    new = keras_rewrite.rewrite(model, ["l2"])
    assert new.get_layer("head").embedding is new.get_layer("emb")  # one variable, as before
    assert [v.path for v in new.weights] == [v.path for v in model.weights]
    assert len(new.weights) == len(model.weights) == 1
    x = np.arange(10).reshape(2, 5) % 20
    np.testing.assert_array_equal(new.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.slow
def test_a_gptq_model_keras_cannot_serialize_is_refused_naming_the_layer(tmp_path):
    """Keras 3.15's GPTQ on a Functional model leaves layers whose get_config() recurses
    without end (their quantization config holds the layers): Keras cannot save the model,
    and the rewrite refuses it by name rather than return something it cannot prove."""
    keras.utils.set_random_seed(0)
    tokens = keras.Input((16,), dtype="int32")
    embedding = layers.Embedding(32, 16, name="emb")
    d1, d2 = layers.Dense(32, activation="relu", name="d1"), layers.Dense(32, name="d2")
    model = keras.Model(tokens, d2(d1(embedding(tokens))))
    data = np.random.default_rng(0).integers(0, 32, (8, 16))

    class Tokens:  # the calibration data is token ids already
        def __call__(self, x):
            return np.asarray(x)

        tokenize = __call__

    config = keras.quantizers.GPTQConfig(
        dataset=data, tokenizer=Tokens(), num_samples=8, sequence_length=16, group_size=8,
        quantization_layer_structure={"pre_block_layers": [embedding],
                                      "sequential_blocks": [d1, d2]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.quantize("gptq", config=config)
    assert model.get_layer("d1").quantization_mode == "gptq"
    with pytest.raises(RecursionError):  # Keras itself
        model.save(tmp_path / "gptq.keras")
    with pytest.raises(RebuildError, match=r"layer 'emb' \(Embedding\).*get_config\(\) fails "
                                           r"\(RecursionError"):
        keras_rewrite.rewrite(model, [])
