"""keras_rewrite.diff_models: what changed, layer by layer (kinds, config values, weights)."""
import json

import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.graph import edit
from keras_rewrite.analysis import diff as model_diff
from keras_rewrite.graph.schema import to_graph
from keras_rewrite.passes.base import run_passes
from helpers import conv_block, foldable


def max_abs(a, b):
    """The reference: float64 difference, computed here, independently of model_diff."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def test_a_model_and_its_identity_rewrite_are_identical():
    model = conv_block()
    diff = keras_rewrite.diff_models(model, keras_rewrite.rewrite(model, []))
    assert diff.identical and diff.layers == []
    assert diff.compared == 7  # x, conv, drop, bn, pool, flat, head
    assert diff.text("a.keras", "b.keras") == "a.keras -> b.keras: identical (7 layers compared)\n"
    assert diff.to_dict()["identical"] is True


def test_every_kind_of_change_of_the_three_passes():
    model = conv_block()
    diff = keras_rewrite.diff_models(model, keras_rewrite.rewrite(
        model, ["l2", "spatial_dropout", "reorder"]))
    kinds = {layer.id: layer.kinds for layer in diff.layers}
    assert kinds == {"conv": ("config",), "bn": ("moved",), "conv_activation": ("added",),
                     "drop": ("moved", "config"), "flat": ("moved",), "head": ("config",)}
    # the order of the new model (topological), each layer once
    assert [layer.id for layer in diff.layers] == ["conv", "bn", "conv_activation", "drop",
                                                   "flat", "head"]
    by_id = diff.by_id()
    conv = {c.key: (c.old, c.new) for c in by_id["conv"].config}
    assert conv["activation"] == ("relu", "linear")
    assert conv["kernel_regularizer"][0] is None
    assert conv["kernel_regularizer"][1]["config"] == {"l2": pytest.approx(1e-4)}
    assert [(c.key, c.old, c.new) for c in by_id["drop"].config] == [
        ("class", "Dropout", "SpatialDropout2D")]
    # moved: the inputs, looked through the added conv_activation
    assert (by_id["bn"].old_inputs, by_id["bn"].new_inputs) == (["drop"], ["conv"])
    assert (by_id["drop"].old_inputs, by_id["drop"].new_inputs) == (["conv"], ["pool"])
    assert "pool" not in by_id  # bn -> (conv_activation, new) -> pool: still after bn
    assert not any(layer.weights for layer in diff.layers)  # weights all carried
    assert diff.counts() == {"added": 1, "removed": 0, "moved": 3, "config": 3, "weights": 0}
    text = diff.text().splitlines()
    assert text[0] == "m -> m: 6 of 8 layers differ (added 1, moved 3, config 3)"
    assert "+ conv_activation (Activation)  added" in text
    assert "> bn (BatchNormalization)  moved: inputs [drop] -> [conv]" in text
    assert ("> drop (SpatialDropout2D)  moved: inputs [conv] -> [pool]; config: class Dropout "
            "-> SpatialDropout2D") in text
    assert "~ head (Dense)  config: kernel_regularizer None -> L2(l2=0.0001)" in text
    json.dumps(diff.to_dict(), allow_nan=False)  # JSON-ready as it is


def test_fold_batchnorm_weights_against_numpy():
    model = foldable()
    new = keras_rewrite.rewrite(model, ["fold_batchnorm"])
    diff = keras_rewrite.diff_models(model, new)
    by_id = diff.by_id()
    assert set(by_id) == {"conv", "bn"} and by_id["bn"].kinds == ("removed",)
    conv = by_id["conv"]
    assert conv.kinds == ("config", "weights")
    assert [(c.key, c.old, c.new) for c in conv.config] == [("use_bias", False, True)]
    kernel, bias = conv.weights
    expected = max_abs(model.get_layer("conv").kernel.numpy(),
                       new.get_layer("conv").kernel.numpy())
    assert expected > 0 and kernel.max_abs_difference == expected
    assert (kernel.name, kernel.change, kernel.old_shape) == ("kernel", "values", (3, 3, 3, 4))
    assert (bias.name, bias.change, bias.new_shape, bias.old_shape) == ("bias", "added", (4,),
                                                                        None)
    assert conv.max_abs_difference == expected
    assert [(w.name, w.change, w.old_shape) for w in by_id["bn"].weights] == [
        ("gamma", "removed", (4,)), ("beta", "removed", (4,)),
        ("moving_mean", "removed", (4,)), ("moving_variance", "removed", (4,))]
    assert "relu" not in by_id  # its input was bn, now conv: bn is removed, so no move
    line = next(x for x in diff.text().splitlines() if x.startswith("~ conv "))
    assert line == (f"~ conv (Conv2D)  config: use_bias False -> True; weights: kernel max "
                    f"|diff| {expected:.3g}, bias added (4,)")


def test_weights_of_a_graph_are_what_the_passes_set():
    """On graphs (no rebuild): the values a pass put in LayerSpec.weights are compared."""
    model = foldable()
    before, after = to_graph(model), to_graph(model)
    run_passes(after, [keras_rewrite.passes.FoldBatchNorm()])
    diff = keras_rewrite.diff_models(before, after)
    kernel = next(w for w in diff.by_id()["conv"].weights if w.name == "kernel")
    folded = after.nodes["conv"]["spec"].weights["kernel"]
    assert kernel.max_abs_difference == max_abs(model.get_layer("conv").kernel.numpy(), folded)


def test_changed_values_and_shapes():
    model = foldable()
    copy = keras_rewrite.rewrite(model, [])
    kernel = copy.get_layer("head").kernel.numpy()
    kernel[3, 1] += 0.25
    kernel[7, 0] -= 1.5
    copy.get_layer("head").kernel.assign(kernel)
    diff = keras_rewrite.diff_models(model, copy)
    (head,) = diff.layers
    assert head.id == "head" and head.kinds == ("weights",)
    (change,) = head.weights
    assert change.change == "values"
    assert change.max_abs_difference == max_abs(model.get_layer("head").kernel.numpy(), kernel)

    smaller = keras_rewrite.surgery.delete_channels(model, "conv", [1])
    diff = keras_rewrite.diff_models(model, smaller)
    conv = diff.by_id()["conv"]
    assert "config" in conv.kinds and ("filters", 4, 3) in [(c.key, c.old, c.new)
                                                          for c in conv.config]
    assert [(w.name, w.change, w.old_shape, w.new_shape) for w in conv.weights] == [
        ("kernel", "shape", (3, 3, 3, 4), (3, 3, 3, 3))]
    assert "kernel shape (3,3,3,4) -> (3,3,3,3)" in diff.text()


def test_removed_layer_in_a_graph_moves_nothing():
    model = conv_block()
    before, after = to_graph(model), to_graph(model)
    edit.remove_node(after, "drop")
    diff = keras_rewrite.diff_models(before, after)
    assert [(layer.id, layer.kinds) for layer in diff.layers] == [("drop", ("removed",))]
    assert "- drop (Dropout)  removed" in diff.text()


def test_nested_model_layers_are_compared_by_path():
    inner_in = keras.Input((4,), name="inner_in")
    inner = keras.Model(inner_in, layers.Dense(3, name="inner_dense")(inner_in), name="block")
    outer_in = keras.Input((4,), name="outer_in")
    model = keras.Model(outer_in, layers.Dense(1, name="top")(inner(outer_in)), name="outer")
    flat = model_diff.flatten(to_graph(model))
    assert list(flat.nodes) == ["outer_in", "block/inner_in", "block/inner_dense", "top",
                                "output:0"]
    assert flat.producers("block/inner_in") == ["outer_in"]
    assert flat.producers("top") == ["block/inner_dense"]
    assert flat.clusters == {("block",): "block (Functional)"}
    diff = keras_rewrite.diff_models(model, keras_rewrite.rewrite(model, ["l2"]))
    assert {layer.id for layer in diff.layers} == {"block/inner_dense", "top"}


def test_a_shared_layer_weights_compared_once():
    inputs = keras.Input((4,), name="x")
    shared = layers.Dense(4, name="shared")
    model = keras.Model(inputs, shared(shared(inputs)))
    copy = keras_rewrite.rewrite(model, [])
    copy.get_layer("shared").bias.assign(np.full(4, 0.5, "float32"))
    diff = keras_rewrite.diff_models(model, copy)
    assert [(layer.id, layer.kinds) for layer in diff.layers] == [("shared", ("weights",))]
    assert diff.layers[0].weights[0].max_abs_difference == 0.5


def test_config_values_are_cut_in_text_and_whole_in_json():
    change = model_diff.LayerDiff("d", "d", "Dense", ("config",), config=[
        model_diff.ConfigChange("units", 2, 3),
        model_diff.ConfigChange("extra", model_diff.MISSING, "x" * 100),
        model_diff.ConfigChange("arr", np.zeros(2), np.ones(2))])
    (text,) = change.details(width=20)
    assert text.startswith("config: units 2 -> 3, extra (absent) -> '" + "x" * 18 + "…, arr ")
    record = change.to_dict()
    assert record["config"][1] == {"key": "extra", "old": None, "new": "x" * 100}
    assert record["config"][2] == {"key": "arr", "old": [0.0, 0.0], "new": [1.0, 1.0]}


def test_nan_in_the_same_place_is_equal_and_one_sided_nan_is_reported():
    a = np.array([1.0, np.nan, 3.0], "float32")
    same = model_diff._weight_changes({"w": a}, {"w": a.copy()})
    assert same == []
    b = a.copy()
    b[0] = np.nan
    (change,) = model_diff._weight_changes({"w": a}, {"w": b})
    assert change.change == "values" and np.isnan(change.max_abs_difference)
    c = np.array([1.0, np.nan, 3.5], "float32")
    (change,) = model_diff._weight_changes({"w": a}, {"w": c})
    assert change.max_abs_difference == 0.5


def test_unnamed_weights_are_paired_by_position():
    old = {"variable_3": np.zeros(2), "bias": np.zeros(1)}
    new = {"variable_9": np.ones(2), "bias": np.zeros(1)}
    (change,) = model_diff._weight_changes(old, new)
    assert (change.name, change.max_abs_difference) == ("variable_9", 1.0)


@pytest.mark.slow  # DenseNet121: ~430 layers, a few seconds
def test_densenet121_fold_batchnorm():
    model = keras.applications.DenseNet121(weights=None)
    new = keras_rewrite.rewrite(model, ["fold_batchnorm"])
    diff = keras_rewrite.diff_models(model, new)
    assert diff.counts() == {"added": 0, "removed": 59, "moved": 0, "config": 59,
                             "weights": 59}
    for layer in diff.of_kind("weights"):
        kernel = layer.weights[0]
        assert kernel.max_abs_difference == max_abs(
            model.get_layer(layer.name).kernel.numpy(), new.get_layer(layer.name).kernel.numpy())
