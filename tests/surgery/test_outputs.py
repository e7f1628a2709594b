"""add_outputs / feature_extractor / truncate / replace_head on small nested models."""
import keras
import numpy as np
import pytest
from keras import layers as L

from keras_rewrite import surgery
from keras_rewrite.surgery import LayerNotFoundError


def classifier(seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((16, 16, 3), name="img")
    y = L.Conv2D(4, 3, name="c1")(x)
    y = L.BatchNormalization(name="bn1")(y)
    y = L.ReLU(name="r1")(y)
    y = L.Conv2D(6, 3, name="c2")(y)
    y = L.ReLU(name="r2")(y)
    backbone = keras.Model(x, y, name="backbone")
    inp = keras.Input((16, 16, 3), name="image")
    z = backbone(inp)
    z = L.GlobalAveragePooling2D(name="gap")(z)
    z = L.Dense(3, name="fc")(z)
    model = keras.Model(inp, z, name="clf")
    for w in model.weights:  # non-trivial BN statistics
        w.assign(np.random.default_rng(1).normal(size=w.shape).astype("float32") * 0.3 + (
            1.0 if "variance" in w.path else 0.0))
    return model


def by_hand(model):
    """The same layers wired by hand: outputs [fc, backbone/r1, c2]."""
    bb = model.get_layer("backbone")
    inp = keras.Input((16, 16, 3))
    r1 = bb.get_layer("r1")(bb.get_layer("bn1")(bb.get_layer("c1")(inp)))
    c2 = bb.get_layer("c2")(r1)
    fc = model.get_layer("fc")(model.get_layer("gap")(bb.get_layer("r2")(c2)))
    return keras.Model(inp, [fc, r1, c2])


def data(n=4, shape=(16, 16, 3)):
    return np.random.default_rng(7).normal(size=(n, *shape)).astype("float32")


def weights(model):
    return {v.path: np.asarray(v) for v in model.weights}


def test_add_outputs_equals_hand_built_model_bit_identically():
    model = classifier()
    before = weights(model)
    x = data()
    new = surgery.add_outputs(model, ["backbone/r1", "c2"])
    got = new.predict(x, verbose=0)
    want = by_hand(model).predict(x, verbose=0)
    assert isinstance(got, list) and len(got) == 3
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(got[0], model.predict(x, verbose=0))
    assert {k: v.tolist() for k, v in weights(model).items()} == {
        k: v.tolist() for k, v in before.items()}  # original untouched
    assert len(model.outputs) == 1


def test_add_outputs_to_a_dict_output_model_adds_keys():
    inp = keras.Input((5,), name="x")
    h = L.Dense(4, name="h")(inp)
    model = keras.Model(inp, {"out": L.Dense(2, name="o")(h)})
    new = surgery.add_outputs(model, ["h"])
    x = data(3, (5,))
    got = new.predict(x, verbose=0)
    assert sorted(got) == ["h", "out"]
    np.testing.assert_array_equal(got["out"], model.predict(x, verbose=0)["out"])
    np.testing.assert_array_equal(got["h"], model.get_layer("h")(x).numpy())


def test_feature_extractor_gives_a_dict_and_drops_the_rest():
    model = classifier()
    fe = surgery.feature_extractor(model, ["backbone/r1", "backbone/c2"])
    x = data()
    got = fe.predict(x, verbose=0)
    want = by_hand(model).predict(x, verbose=0)
    assert sorted(got) == ["backbone/c2", "backbone/r1"]
    np.testing.assert_array_equal(got["backbone/r1"], want[1])
    np.testing.assert_array_equal(got["backbone/c2"], want[2])
    names = {layer.name for layer in fe.layers}
    assert "fc" not in names and "gap" not in names and "r2" not in names


def test_unknown_layer_is_named():
    with pytest.raises(LayerNotFoundError, match="backbone/nope"):
        surgery.add_outputs(classifier(), ["backbone/nope"])
    with pytest.raises(LayerNotFoundError, match="'zzz'"):
        surgery.feature_extractor(classifier(), ["zzz"])


def test_truncate_keeps_every_weight_before_the_cut():
    model = classifier()
    cut = surgery.truncate(model, at="backbone/c2")
    assert cut.output.shape == (None, 12, 12, 6)
    for name in ("c1", "bn1", "c2"):
        a = model.get_layer("backbone").get_layer(name).get_weights()
        b = cut.get_layer(name).get_weights()
        assert len(a) == len(b) > 0
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    assert "fc" not in {layer.name for layer in cut.layers}
    x = data()
    np.testing.assert_array_equal(cut.predict(x, verbose=0), by_hand(model).predict(x, verbose=0)[2])


@pytest.mark.parametrize("kind", ["layer", "list", "model"])
def test_replace_head(kind):
    model = classifier()
    if kind == "layer":
        head, shape = L.GlobalMaxPooling2D(name="gmp"), (None, 6)
    elif kind == "list":
        head, shape = [L.Flatten(name="flat"), L.Dense(10, name="fc10")], (None, 10)
    else:
        hin = keras.Input((12, 12, 6))
        head = keras.Model(hin, L.Dense(7, name="d7")(L.GlobalAveragePooling2D()(hin)),
                           name="head")
        shape = (None, 7)
    new = surgery.replace_head(model, at="backbone/c2", head=head)
    assert tuple(new.output.shape) == shape
    for name in ("c1", "bn1", "c2"):
        for u, v in zip(model.get_layer("backbone").get_layer(name).get_weights(),
                        new.get_layer(name).get_weights()):
            np.testing.assert_array_equal(u, v)
    if kind == "model":
        x = data()
        feats = by_hand(model).predict(x, verbose=0)[2]
        np.testing.assert_allclose(new.predict(x, verbose=0), head.predict(feats, verbose=0),
                                   rtol=1e-6, atol=1e-6)
    assert tuple(model.output.shape) == (None, 3)


@pytest.mark.slow
def test_add_outputs_on_resnet50_inside_a_classifier():
    backbone = keras.applications.ResNet50(weights=None, include_top=False,
                                           input_shape=(64, 64, 3))
    inp = keras.Input((64, 64, 3))
    out = L.Dense(5, name="head")(L.GlobalAveragePooling2D(name="pool")(backbone(inp)))
    model = keras.Model(inp, out, name="clf")
    new = surgery.add_outputs(model, ["resnet50/conv4_block6_out", "conv3_block4_out"])
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype("float32")
    logits, c4, c3 = new.predict(x, verbose=0)
    np.testing.assert_array_equal(logits, model.predict(x, verbose=0))
    feats = keras.Model(backbone.input, [backbone.get_layer("conv4_block6_out").output,
                                         backbone.get_layer("conv3_block4_out").output])
    want4, want3 = feats.predict(x, verbose=0)
    np.testing.assert_array_equal(c4, want4)
    np.testing.assert_array_equal(c3, want3)
    assert c4.shape == (2, 4, 4, 1024)
