"""keras_rewrite.verify.same_model: every difference a written file can hide is found, with its layer."""
import keras
import numpy as np
import pytest
from keras import layers

from keras_rewrite import verify
from keras_rewrite.errors import RewriteError
from keras_rewrite.verify import ModelMismatchError, compare_models
from keras_rewrite.verify.predictions import (FALLBACK_WORDS, max_abs_difference, predict,
                                              random_batch, sample_batch)


def dense_model(l2=1e-4, dtype=None, names=("a", "b")):
    inputs = keras.Input((3,), name="x")
    x = inputs
    for name in names:
        x = layers.Dense(3, name=name, dtype=dtype, activation="relu",
                         kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)(x)
    return keras.Model(inputs, x, name="m")


def copy_of(model, **changes):
    """The model built again with `changes` (dense_model's arguments), same weights."""
    other = dense_model(**changes)
    other.set_weights(model.get_weights())
    return other


@keras.saving.register_keras_serializable(package="verify_test")
class Block(layers.Layer):
    """A custom layer whose sublayer's regularizer is not in its config (like KerasHub's)."""

    def __init__(self, l2=None, **kwargs):
        super().__init__(**kwargs)
        self.proj = layers.Dense(3, name="proj",
                                 kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)

    def call(self, x):
        return self.proj(x)


def block_model(l2):
    inputs = keras.Input((3,), name="x")
    return keras.Model(inputs, Block(l2, name="block")(inputs), name="m")


def test_an_identical_reloaded_copy_passes(tmp_path):
    model = dense_model()
    model.save(tmp_path / "m.keras")
    x = np.ones((2, 3), "float32")
    comparison = compare_models(model, keras.saving.load_model(tmp_path / "m.keras"), x)
    assert comparison and comparison.differences == [] and comparison.max_abs_difference == 0
    assert comparison.layers_compared == 4  # the model, its input and two Dense layers


def test_a_dropped_regularizer_is_found_in_config_and_variable():
    model = dense_model()
    other = copy_of(model)
    other.get_layer("b").kernel_regularizer = None
    other.get_layer("b").kernel.regularizer = None
    found = [str(d) for d in compare_models(model, other).differences]
    assert found == ["layer 'b': kernel_regularizer expected L2(0.0001), received None",
                     "layer 'b': regularizer of the variable 'kernel' expected L2(0.0001), "
                     "received None"]


def test_a_regularizer_lost_by_a_sublayer_of_a_custom_layer_is_found():
    model = block_model(1e-4)
    other = block_model(None)  # what loading rebuilds from a config without the regularizer
    other.set_weights(model.get_weights())
    (first, second) = compare_models(model, other).differences
    assert str(first) == "layer 'block/proj': kernel_regularizer expected L2(0.0001), received None"
    assert second.what == "regularizer of the variable 'kernel'"


def test_a_changed_factor_is_found():
    model = dense_model(l2=1e-4)
    differences = compare_models(model, copy_of(model, l2=1e-3)).differences
    assert {d.layer for d in differences} == {"a", "b"}
    assert "kernel_regularizer expected L2(0.0001), received L2(0.001)" in str(differences[0])


def test_a_changed_dtype_policy_is_found():
    model = dense_model()
    (difference,) = [d for d in compare_models(model, copy_of(model, dtype="mixed_float16"))
                     .differences if d.what == "dtype policy"][:1]
    assert str(difference) == "layer 'a': dtype policy expected float32, received mixed_float16"


def test_a_changed_weight_is_found_by_its_hash():
    model = dense_model()
    other = copy_of(model)
    kernel = other.get_layer("b").kernel
    kernel.assign(kernel.numpy() + np.eye(3, dtype="float32") * 1e-7)
    (difference,) = compare_models(model, other).differences
    assert difference.kind == "weights" and difference.layer == "b"
    assert str(difference).startswith("layer 'b': weight 'kernel' expected sha256 ")


def test_reordered_layers_are_found():
    model = dense_model()
    other = dense_model(names=("b", "a"))
    differences = compare_models(model, other).differences
    assert str(differences[0]) == "layer 'a': position expected after 'x', received after 'b'"


def test_a_missing_layer_and_another_class_are_found():
    model = dense_model()
    inputs = keras.Input((3,), name="x")
    other = keras.Model(inputs, layers.EinsumDense("ab,bc->ac", (3,), name="a")(inputs),
                        name="m")
    found = [str(d) for d in compare_models(model, other).differences]
    assert found[0] == "layer 'b': expected a Dense of this name, received no such layer"
    assert "layer 'a': class expected Dense, received EinsumDense" in found


def test_predictions_reuse_the_expected_outputs():
    model = dense_model()
    summary = verify.summarize(model)
    x = np.ones((2, 3), "float32")
    outputs = verify.predict(model, x)
    assert compare_models(summary, copy_of(model), x, expected_outputs=outputs)
    wrong = outputs + 1.0
    comparison = compare_models(summary, copy_of(model), x, expected_outputs=wrong)
    assert comparison.max_abs_difference == pytest.approx(1.0)
    assert str(comparison.differences[-1]) == (
        "predictions: largest absolute difference on the batch expected 0, received 1")
    with pytest.raises(ValueError, match="expected_outputs is required"):
        compare_models(summary, model, x)


def test_check_same_model_raises_one_line_naming_the_layer():
    model = dense_model()
    other = copy_of(model, l2=None)
    with pytest.raises(ModelMismatchError) as info:
        verify.check_same_model(model, other, prefix="the written file would reload without "
                                                      "the rewrite")
    message = str(info.value)
    assert message == ("the written file would reload without the rewrite: layer 'a': "
                       "kernel_regularizer expected L2(0.0001), received None (and 3 more "
                       "differences)")
    assert isinstance(info.value, RewriteError) and len(info.value.differences) == 4


@pytest.mark.parametrize("a, b, expected", [
    ([np.zeros(3)], [np.zeros(3)], 0.0),
    ([np.array([1.0, np.nan])], [np.array([1.5, np.nan])], 0.5),
    ([np.array([1.0, np.nan])], [np.array([1.0, 2.0])], float("inf")),
    ([np.zeros(3)], [np.zeros(4)], float("inf")),
    ([np.zeros(3)], [], float("inf")),
    ({"p": np.zeros(2), "q": np.ones(2)}, {"q": np.ones(2), "p": np.full(2, 0.25)}, 0.25),
    ({"p": np.zeros(2)}, {"q": np.zeros(2)}, float("inf")),
    ({"p": np.zeros(2)}, [np.zeros(2)], float("inf")),
    (np.array([b"cat"]), np.array([b"cat"]), 0.0),
    (np.array(["cat"]), np.array(["dog"]), float("inf")),
])
def test_max_abs_difference(a, b, expected):
    assert max_abs_difference(a, b) == expected


def test_predict_keeps_the_output_structure():
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, {"y": layers.Dense(2)(inputs), "z": layers.Dense(1)(inputs)})
    out = verify.predict(model, np.ones((2, 3), "float32"))
    assert sorted(out) == ["y", "z"] and out["z"].shape == (2, 1)
    assert isinstance(out["y"], np.ndarray)


@keras.saving.register_keras_serializable(package="verify_test")
class Unnamed(layers.Layer):
    """Sublayers and variables without names: each build gives them new automatic names."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.Sequential([layers.Dense(3)])

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(3,), initializer="ones")
        self.inner.build(input_shape)

    def call(self, x):
        return self.inner(x) * self.scale


def test_automatic_names_of_sublayers_and_variables_do_not_count(tmp_path):
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, Unnamed(name="u")(inputs), name="m")
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    inner = [layer.name for layer in reloaded.get_layer("u").inner.layers]
    assert inner != [layer.name for layer in model.get_layer("u").inner.layers]  # renamed
    assert compare_models(model, reloaded, np.ones((2, 3), "float32"))


# --------------------------------------------------------------------------- predictions


def test_random_batch_fills_unknown_dims_and_ints():
    a = keras.Input((None, None, 3))
    b = keras.Input((5,), dtype="int32")
    model = keras.Model([a, b], [layers.GlobalAveragePooling2D()(a), layers.Embedding(2, 2)(b)])
    xa, xb = random_batch(model, batch=3)
    assert xa.shape == (3, 32, 32, 3) and xa.dtype == np.float32
    assert xb.dtype == np.int32 and set(np.unique(xb)) <= {0, 1}
    assert np.array_equal(random_batch(model, batch=3)[0], xa)  # reproducible


def test_random_batch_follows_a_dict_input_structure():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    model = keras.Model({"b": b, "a": a}, layers.Concatenate()([a, b]))
    x = random_batch(model)
    assert isinstance(x, dict) and x["a"].shape == (4, 4) and x["b"].shape == (4, 3)
    assert predict(model, x).shape == (4, 7)


def test_random_batch_of_strings_uses_the_vocabularies():
    words, codes = (keras.Input((3,), dtype="string", name=n) for n in ("w", "c"))
    text = keras.Input((1,), dtype="string", name="t")
    lookup = layers.StringLookup(vocabulary=["cat", "dog"], num_oov_indices=0)
    vectorize = layers.TextVectorization(max_tokens=8)
    vectorize.adapt(["the sun rose"])
    hashed = layers.Hashing(4)(codes)  # a string input without a vocabulary
    model = keras.Model([words, text, codes], [lookup(words), vectorize(text), hashed])
    xw, xt, xc = random_batch(model, batch=2)
    assert xw.shape == (2, 3) and set(xw.ravel()) <= {"cat", "dog"}
    assert all(len(s.split()) == 3 and set(s.split()) <= {"the", "sun", "rose"}
               for s in xt.ravel())
    assert set(xc.ravel()) <= set(FALLBACK_WORDS)
    assert [o.shape[0] for o in keras.tree.flatten(predict(model, [xw, xt, xc]))] == [2, 2, 2]


def test_sample_batch_shrinks_unknown_dims_the_model_refuses():
    inputs = keras.Input((None,), name="tokens")

    class AtMost16(layers.Layer):
        def call(self, x):
            if x.shape[1] is not None and x.shape[1] > 16:
                raise ValueError(f"at most 16 positions; received {x.shape[1]}")
            return x

    model = keras.Model(inputs, AtMost16()(inputs))
    x, outputs = sample_batch(model, batch=2)
    assert x.shape == (2, 16) and outputs.shape == (2, 16)
    class Never(layers.Layer):
        def call(self, x):
            if not isinstance(x, keras.KerasTensor):
                raise RuntimeError("refuses every batch")
            return x

    fixed = keras.Input((3,))
    with pytest.raises(RuntimeError, match="refuses every batch"):  # tried once: no None dim
        sample_batch(keras.Model(fixed, Never()(fixed)))
