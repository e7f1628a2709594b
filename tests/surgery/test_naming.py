"""rename_layers and merge: names as asked, predictions bit-identical."""
import keras
import numpy as np
import pytest
from keras import layers as L

from keras_rewrite import surgery
from keras_rewrite.surgery import LayerNotFoundError, SurgeryError, SurgeryShapeError


def mlp(name, seed, units=3):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6,), name="x")
    h = L.Dense(8, activation="relu", name="hidden")(inp)
    h = L.BatchNormalization(name="bn")(h)
    return keras.Model(inp, L.Dense(units, name="out")(h), name=name)


def data(n=5):
    return np.random.default_rng(4).normal(size=(n, 6)).astype("float32")


def test_rename_by_prefix_mapping_and_fn_keeps_predictions():
    model = mlp("m", 0)
    x = data()
    want = model.predict(x, verbose=0)
    for kwargs, names in [({"prefix": "p_"}, {"p_x", "p_hidden", "p_bn", "p_out"}),
                          ({"mapping": {"hidden": "h1"}}, {"x", "h1", "bn", "out"}),
                          ({"fn": str.upper}, {"X", "HIDDEN", "BN", "OUT"})]:
        new = surgery.rename_layers(model, **kwargs)
        assert {layer.name for layer in new.layers} == names
        np.testing.assert_array_equal(new.predict(x, verbose=0), want)
    assert {layer.name for layer in model.layers} == {"x", "hidden", "bn", "out"}


def test_rename_nested_path_and_refusals():
    inner = mlp("inner", 1)
    inp = keras.Input((6,))
    outer = keras.Model(inp, inner(inp), name="outer")
    new = surgery.rename_layers(outer, mapping={"inner/hidden": "first"})
    assert "first" in {layer.name for layer in new.get_layer("inner").layers}
    x = data()
    np.testing.assert_array_equal(new.predict(x, verbose=0), outer.predict(x, verbose=0))
    with pytest.raises(LayerNotFoundError, match="'nope'"):
        surgery.rename_layers(outer, mapping={"nope": "a"})
    with pytest.raises(SurgeryError, match="without '/'"):
        surgery.rename_layers(inner, mapping={"bn": "a/b"})
    with pytest.raises(SurgeryError, match="several layers named \\['out'\\]"):
        surgery.rename_layers(inner, mapping={"bn": "out"})
    with pytest.raises(SurgeryError, match="exactly one of prefix, mapping, fn"):
        surgery.rename_layers(inner, prefix="a", mapping={"bn": "c"})


def test_merge_outputs_gives_both_models_predictions_bit_identically():
    a, b = mlp("a", 1), mlp("b", 2, units=4)
    merged = surgery.merge([a, b], how="outputs")
    names = {layer.name for layer in merged.layers}
    assert names == {"a_x", "a_hidden", "a_bn", "a_out", "b_x", "b_hidden", "b_bn", "b_out"}
    assert len(merged.inputs) == 2 and len(merged.outputs) == 2
    xa, xb = data(), data(5) * 2
    ya, yb = merged.predict([xa, xb], verbose=0)
    np.testing.assert_array_equal(ya, a.predict(xa, verbose=0))
    np.testing.assert_array_equal(yb, b.predict(xb, verbose=0))
    assert {layer.name for layer in a.layers} == {"x", "hidden", "bn", "out"}


def test_merge_keeps_names_without_clash_and_concat_shares_inputs():
    a = mlp("a", 1)
    keras.utils.set_random_seed(5)
    inp = keras.Input((6,), name="feats")
    b = keras.Model(inp, L.Dense(2, name="other")(inp), name="b")
    merged = surgery.merge([a, b], how="concat")
    assert {layer.name for layer in merged.layers} >= {"x", "hidden", "bn", "out", "other",
                                                        "merge_concat"}
    assert "feats" not in {layer.name for layer in merged.layers}
    assert len(merged.inputs) == 1 and tuple(merged.output.shape) == (None, 5)
    x = data()
    np.testing.assert_array_equal(merged.predict(x, verbose=0),
                                  np.concatenate([a.predict(x, verbose=0),
                                                  b.predict(x, verbose=0)], axis=-1))
    inp = keras.Input((7,))
    c = keras.Model(inp, L.Dense(2, name="dc")(inp), name="c")
    with pytest.raises(SurgeryShapeError, match="model 'c' has inputs"):
        surgery.merge([a, c], how="concat")
    with pytest.raises(SurgeryError, match="how to be one of"):
        surgery.merge([a, c], how="stack")


def test_merge_of_models_of_the_same_name_numbers_the_prefix():
    a, b = mlp("m", 1), mlp("m", 2)
    merged = surgery.merge([a, b])
    assert {"m_0_hidden", "m_1_hidden"} <= {layer.name for layer in merged.layers}
    x = data()
    ya, yb = merged.predict([x, x], verbose=0)
    np.testing.assert_array_equal(ya, a.predict(x, verbose=0))
    np.testing.assert_array_equal(yb, b.predict(x, verbose=0))


def test_merge_pass_takes_model_file_paths(tmp_path):
    import keras_rewrite

    a, b = mlp("a", 1), mlp("b", 2)
    path = str(tmp_path / "b.keras")
    b.save(path)
    merged = keras_rewrite.rewrite(a, [surgery.Merge([path], how="outputs", name="ab")])
    assert merged.name == "ab"
    x = data()
    ya, yb = merged.predict([x, x], verbose=0)
    np.testing.assert_array_equal(ya, a.predict(x, verbose=0))
    np.testing.assert_array_equal(yb, b.predict(x, verbose=0))


def test_concat_with_a_model_whose_output_is_its_input():
    a = mlp("a", 1)
    inp = keras.Input((6,), name="raw")
    identity = keras.Model(inp, inp, name="ident")
    merged = surgery.merge([a, identity], how="concat")
    x = data()
    np.testing.assert_array_equal(merged.predict(x, verbose=0),
                                  np.concatenate([a.predict(x, verbose=0), x], axis=-1))
