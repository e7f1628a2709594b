"""Properties of every pass over random small CNN graphs (see tests/strategies.py).

Sized by a hypothesis profile chosen with $HYPOTHESIS_PROFILE: "ci" (the default: few
examples per property, derandomized, so the default run is fast and reproducible) or
"thorough" (many examples, random). A failing example prints as a code-like listing of the
model; what the properties caught lives on as ordinary tests at the end of this file.
"""
import os
import tempfile

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import layers

import keras_rewrite
from helpers import (all_layers, assert_identical_copy, assert_same_predictions,
                     model_fingerprint, predict, random_inputs)
from keras_rewrite.graph.schema import iter_graphs, to_graph, validate
from keras_rewrite.passes import ReorderBlocks
import strategies
from strategies import ANCHORS, CATEGORY, build, model_specs, orders

PROFILE = strategies.profile()
N = PROFILE.max_examples
DEFAULT_L2 = 1e-4  # L2Regularization's default factor, written out independently

PASS_NAMES = ("spatial_dropout", "l2", "reorder")


# ------------------------------------------------------------------------------ helpers


def by_name(model):
    """Layer name -> layer, nested models' layers included."""
    return {layer.name: layer for layer in all_layers(model)}


def penalty(model):
    return float(sum(float(x) for x in model.losses))


def expected_penalty(model, names, coefficient=DEFAULT_L2):
    """sum c * ||kernel||^2 in float64 over the named layers' kernels that are trainable."""
    trainable = {id(v) for v in model.trainable_weights}
    found = by_name(model)
    total = 0.0
    for name in names:
        kernel = found[name].kernel
        if id(kernel) in trainable:
            total += coefficient * np.sum(np.asarray(kernel, dtype=np.float64) ** 2)
    return total


def assert_close_predictions(a, b, x, tol=1e-5):
    pa, pb = predict(a, x), predict(b, x)
    assert len(pa) == len(pb)
    for u, v in zip(pa, pb):
        assert u.shape == v.shape
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


def output_shapes(model):
    return [tuple(t.shape) for t in model.outputs]


def unsorted_runs(model, order):
    """(model name, anchor, run layer names) of each run after a conv/dense layer whose
    categories are not sorted by `order`.

    A run, as in the pass's contract: starting at a consumer of the anchor, layers of the
    categories in `order` with one input each, every tensor inside it with one consumer and
    not a model output. Categories are looked up by class name here, not by the pass.
    """
    found = []

    def movable(g, node):
        data = g.nodes[node]
        return (data["kind"] == "layer" and g.in_degree(node) == 1
                and CATEGORY.get(data["spec"].cls.__name__) in order)

    for g in iter_graphs(to_graph(model)):
        for node, data in g.nodes(data=True):
            if data["kind"] != "layer" or data["spec"].cls.__name__ not in ANCHORS:
                continue
            for first in dict.fromkeys(v for _, v in g.out_edges(node)):
                run, current = [], first
                while movable(g, current):
                    run.append(current)
                    consumers = [v for _, v in g.out_edges(current)]
                    if len(consumers) != 1:
                        break
                    current = consumers[0]
                categories = [CATEGORY[g.nodes[n]["spec"].cls.__name__] for n in run]
                if categories != sorted(categories, key=order.index):
                    found.append((g.graph["name"], data["spec"].name,
                                  tuple(g.nodes[n]["spec"].name for n in run)))
    return found


def pass_subsets(min_size=0):
    return st.lists(st.sampled_from(PASS_NAMES), min_size=min_size, max_size=3, unique=True)


# ------------------------------------------------------------------------------ properties


@settings(PROFILE, max_examples=N, deadline=None)
@given(spec=model_specs())
def test_identity_rewrite_is_a_bit_identical_copy(spec):
    model = build(spec)
    before = model_fingerprint(model)
    copy = keras_rewrite.rewrite(model)
    assert_identical_copy(model, copy)  # names, classes, configs, weights, predictions
    assert model_fingerprint(model) == before


@settings(PROFILE, max_examples=N, deadline=None)
@given(spec=model_specs(),
       passes=st.sampled_from([["l2"], ["spatial_dropout"], ["l2", "spatial_dropout"],
                               ["spatial_dropout", "l2"]]))
def test_l2_and_spatial_dropout_keep_predictions_and_add_exactly_the_penalty(spec, passes):
    model = build(spec)
    before = model_fingerprint(model)
    result = keras_rewrite.rewrite_with_report(model, passes)
    new = result.model
    assert model_fingerprint(model) == before
    assert_same_predictions(model, new, random_inputs(model))
    assert all(p.outputs_unchanged is True for p in result.report.passes)

    kernels = strategies.kernel_layers(spec)
    new_layers = by_name(new)
    if "l2" in passes:
        for name in kernels:  # frozen layers too: regularized, though not counted in the loss
            config = new_layers[name].get_config()["kernel_regularizer"]
            assert config is not None and config["class_name"] == "L2", name
            assert config["config"]["l2"] == pytest.approx(DEFAULT_L2), name
        want = expected_penalty(model, kernels)
    else:
        want = 0.0
    np.testing.assert_allclose(penalty(new), want, rtol=1e-6, atol=0)

    for name, (shapes, noise_shape) in strategies.dropouts(spec).items():
        layer = new_layers[name]
        # Feature maps (channels_last) whose dropout is element-wise or already per channel.
        spatial = ("spatial_dropout" in passes and all(len(s) == 3 for s in shapes)
                   and noise_shape in (None, (None, 1, 1, next(iter(shapes))[-1])))
        assert type(layer) is (layers.SpatialDropout2D if spatial else layers.Dropout), \
            f"{name} (inputs {shapes}, noise_shape={noise_shape}) became {type(layer).__name__}"
        assert layer.rate == 0.25 and layer.seed == 1


@settings(PROFILE, max_examples=N, deadline=None)
@given(spec=model_specs(), order=orders(), split=st.booleans())
def test_reorder_sorts_every_run_keeps_weights_and_is_idempotent(spec, order, split):
    model = build(spec)
    before = model_fingerprint(model)
    reorder = ReorderBlocks(order, split_fused_activation=split)
    result = keras_rewrite.rewrite_with_report(model, [reorder])
    new, (report,) = result.model, result.report.passes
    assert model_fingerprint(model) == before

    assert output_shapes(new) == output_shapes(model)
    # Every run is sorted, but for those the pass says it left alone (a layer whose weights
    # or noise_shape fit one side of a pooling layer only): they stay exactly as they were.
    layer_of = {n: d["spec"].name for g in iter_graphs(to_graph(model))
                for n, d in g.nodes(data=True) if d["spec"] is not None}  # node id -> name
    skipped = {layer_of[c.layer] for c in report.changes if c.action == "skipped"
               and not c.detail.startswith("fused activation")}
    left = unsorted_runs(new, order)
    assert {anchor for _, anchor, _ in left} <= skipped, left
    assert set(left) <= set(unsorted_runs(model, order)), left
    old_layers, new_layers = by_name(model), by_name(new)
    for name, layer in new_layers.items():
        if name not in old_layers:  # only the Activation a split adds, which has no weights
            assert split and type(layer) is layers.Activation and not layer.weights, name
            continue
        old = old_layers[name]
        assert [w.name for w in layer.weights] == [w.name for w in old.weights], name
        for a, b in zip(old.weights, layer.weights):
            assert np.array_equal(np.asarray(a), np.asarray(b)), f"{name}/{a.name} differs"
    assert set(old_layers) <= set(new_layers)

    x = random_inputs(model)
    if not report.modified:
        assert_same_predictions(model, new, x)
    elif report.outputs_unchanged:
        assert_close_predictions(model, new, x)

    again = keras_rewrite.rewrite_with_report(new, [reorder]).report.passes[0]
    assert not again.modified, again.changes


@settings(PROFILE, max_examples=N, deadline=None)
@given(spec=model_specs(),
       passes=st.lists(st.sampled_from(PASS_NAMES), min_size=1, max_size=4))
def test_any_pass_sequence_leaves_the_callers_model_alone(spec, passes):
    model = build(spec)
    x = random_inputs(model)
    before, outputs = model_fingerprint(model), predict(model, x)
    new = keras_rewrite.rewrite(model, passes)
    validate(to_graph(new))
    assert model_fingerprint(model) == before
    for a, b in zip(outputs, predict(model, x)):
        assert np.array_equal(a, b)
    assert output_shapes(new) == output_shapes(model)


@settings(PROFILE, max_examples=N, deadline=None)
@given(spec=model_specs(), passes=pass_subsets(), compile_it=st.booleans())
@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_save_load_rewrite_save_load_keeps_predictions(spec, passes, compile_it):
    model = build(spec)
    if compile_it:
        model.compile(optimizer="adam", loss="mse")
    x = random_inputs(model)
    with tempfile.TemporaryDirectory() as tmp:
        first, second = os.path.join(tmp, "a.keras"), os.path.join(tmp, "b.keras")
        model.save(first)
        loaded = keras.saving.load_model(first)
        assert_same_predictions(model, loaded, x)
        result = keras_rewrite.rewrite_with_report(loaded, passes)
        result.model.save(second)
        final = keras.saving.load_model(second)
    assert_same_predictions(result.model, final, x)
    np.testing.assert_allclose(penalty(final), penalty(result.model), rtol=1e-6)
    assert final.compiled == compile_it
    moved = any(p.modified for p in result.report.passes if p.pass_name == "ReorderBlocks")
    if not moved:
        assert_same_predictions(model, final, x)
    elif result.report.outputs_unchanged:
        assert_close_predictions(model, final, x)


# ------------------------------------------------------------------------------ regressions
# Examples the properties found, kept as explicit small models.


@pytest.mark.parametrize("upstream", ["conv", "nested_model"])
def test_drop_connect_on_a_one_row_map_is_not_made_spatial(upstream):
    """Caught by the SpatialDropout property. On a channels_last map with one row, the
    drop-connect noise_shape (None, 1, 1, 1) equals the channels_first whole-channel shape
    (None, rows=1, 1, 1): the pass turned it into SpatialDropout2D(data_format=
    "channels_first") and reported "already drops whole channels", even after a
    channels_last Conv2D. It drops whole samples; it must be left alone."""
    inputs = keras.Input((1, 4, 3), name="x")
    if upstream == "conv":
        x = layers.Conv2D(2, 1, name="conv")(inputs)
    else:  # no data_format visible upstream: the default channels_last applies
        sub_in = keras.Input((1, 4, 3), name="sub_x")
        sub = keras.Model(sub_in, layers.Conv2D(2, 1, name="conv")(sub_in), name="sub")
        x = sub(inputs)
    x = layers.Dropout(0.25, noise_shape=(None, 1, 1, 1), seed=1, name="drop_connect")(x)
    model = keras.Model(inputs, x)
    result = keras_rewrite.rewrite_with_report(model, ["spatial_dropout"])
    assert type(result.model.get_layer("drop_connect")) is layers.Dropout
    (change,) = result.report.passes[0].changes
    assert change.action == "skipped" and "own noise_shape=(None, 1, 1, 1)" in change.detail
    assert_same_predictions(model, result.model, random_inputs(model))


def test_a_layer_named_like_a_further_call_keeps_its_own_node():
    """Caught by the identity property: layer 'dense' called twice, with a layer named
    'dense:1' between the calls. The graph gave the second call of 'dense' the id 'dense:1',
    the other layer's node: one node, a cycle, GraphError on a valid model."""
    inputs = keras.Input((3,), name="x")
    dense = layers.Dense(3, name="dense")
    x = layers.ReLU(name="dense:1")(dense(inputs))
    model = keras.Model(inputs, dense(x))
    g = to_graph(model)
    validate(g)
    assert g.nodes["dense:1"]["spec"].name == "dense:1"
    assert g.nodes["dense:2"]["spec"].name == "dense"
    assert_identical_copy(model, keras_rewrite.rewrite(model))


def test_a_shared_layer_named_output_does_not_become_an_output_node():
    """The same clash with the output nodes: a shared layer named 'output' called twice in a
    model with two outputs; its second call and the second output node were both
    'output:1'. Output nodes keep their documented ids."""
    inputs = keras.Input((3,), name="x")
    dense = layers.Dense(3, name="output")
    first = dense(inputs)
    model = keras.Model(inputs, [first, dense(first)])
    g = to_graph(model)
    validate(g)
    assert g.graph["outputs"] == ["output:0", "output:1"]
    assert {n: d["kind"] for n, d in g.nodes(data=True)} == {
        "x": "input", "output": "layer", "output:2": "layer", "output:0": "output",
        "output:1": "output"}
    assert_identical_copy(model, keras_rewrite.rewrite(model))


def test_a_layer_named_like_an_output_node():
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, layers.Dense(2, name="output:0")(inputs))
    g = to_graph(model)
    validate(g)
    assert g.graph["outputs"] == ["output:0_1"] and g.nodes["output:0"]["kind"] == "layer"
    assert_identical_copy(model, keras_rewrite.rewrite(model))
