"""freeze / unfreeze: the trainable set changes exactly as asked; a fit step respects it."""
import keras
import numpy as np
import pytest
from keras import layers as L

from keras_rewrite import surgery
from keras_rewrite.surgery import LayerNotFoundError


def model_with_backbone():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(4, 3, name="c1")(x)
    y = L.BatchNormalization(name="bn1")(y)
    y = L.Conv2D(4, 3, name="c2")(y)
    y = L.BatchNormalization(name="bn2")(y)
    backbone = keras.Model(x, y, name="backbone")
    inp = keras.Input((8, 8, 3))
    z = L.Dense(2, name="fc")(L.GlobalAveragePooling2D(name="gap")(backbone(inp)))
    return keras.Model(inp, z, name="clf")


def trainable(model):
    out = {}
    for layer in model._flatten_layers(include_self=False):
        if layer.weights and not isinstance(layer, keras.Model):
            out[layer.name] = bool(layer.trainable_weights)
    return out


def state(model):
    return {v.path: np.array(v) for v in model.weights}


def fit_step(model):
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(8, 8, 8, 3)).astype("float32") * 3 + 1,
              rng.normal(size=(8, 2)).astype("float32"), batch_size=8, epochs=1, verbose=0)


def test_freeze_changes_exactly_the_matching_layers():
    model = model_with_backbone()
    assert set(trainable(model).values()) == {True}
    frozen = surgery.freeze(model, ["bn*", "backbone/c1"])
    assert trainable(frozen) == {"c1": False, "bn1": False, "c2": True, "bn2": False, "fc": True}
    assert set(trainable(model).values()) == {True}  # original untouched
    again = surgery.unfreeze(frozen, ["backbone/bn2"])
    assert trainable(again) == {"c1": False, "bn1": False, "c2": True, "bn2": True, "fc": True}
    whole = surgery.freeze(model, ["backbone"])
    assert trainable(whole) == {"c1": False, "bn1": False, "c2": False, "bn2": False, "fc": True}
    one = surgery.unfreeze(whole, ["c2"])
    assert trainable(one) == {"c1": False, "bn1": False, "c2": True, "bn2": False, "fc": True}
    x = np.ones((2, 8, 8, 3), "float32")
    np.testing.assert_array_equal(one.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_fit_step_leaves_frozen_weights_and_bn_statistics_unchanged():
    frozen = surgery.freeze(model_with_backbone(), ["bn1", "c1"])
    before = state(frozen)
    fit_step(frozen)
    after = state(frozen)
    for path in before:
        same = np.array_equal(before[path], after[path])
        if path.split("/")[-2] in ("c1", "bn1") or "/c1/" in path or "/bn1/" in path:
            assert same, path  # frozen: kernel, gamma, beta AND moving mean/variance
        else:
            assert not same, path  # trained, or (bn2) moving statistics updated


def test_a_pattern_matching_nothing_is_named():
    with pytest.raises(LayerNotFoundError, match="'conv\\*' matches no layer"):
        surgery.freeze(model_with_backbone(), ["conv*"])


def test_the_passes_work_through_rewrite_and_report_each_layer():
    import keras_rewrite

    model = model_with_backbone()
    result = keras_rewrite.rewrite_with_report(model, [surgery.Freeze(["backbone"]),
                                                       surgery.Unfreeze(["bn2"])])
    assert trainable(result.model) == {"c1": False, "bn1": False, "c2": False, "bn2": True,
                                       "fc": True}
    frozen = {c.layer for c in result.report.passes[0].changes if c.action == "frozen"}
    assert frozen == {"backbone", "backbone/c1", "backbone/bn1", "backbone/c2", "backbone/bn2"}
    assert set(trainable(model).values()) == {True}
    # the copies the pass made are not the original's variables
    assert not ({id(v) for v in result.model.weights} & {id(v) for v in model.weights})
