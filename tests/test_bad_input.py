"""The README's table "you give / you get", library side: one test per row not proven elsewhere.

Rows proven in other files: subclassed and unbuilt models (test_roundtrip), per_layer patterns
matching nothing (test_l2), structural passes in RewriteCallback (test_callback), every
broken-file case of the CLI (test_cli, test_io), layers whose config does not round-trip, copied
or refused, and copy=False (test_fidelity).
"""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from helpers import model_fingerprint
from keras_rewrite.passes import L2Regularization, PassResult


def small_model():
    inputs = keras.Input((4,), name="x")
    hidden = layers.Dense(3, name="hidden")(inputs)
    return keras.Model(inputs, layers.Dense(2, name="head")(hidden))


def rewrite_fails(model, passes, error, match):
    before = model_fingerprint(model)
    with pytest.raises(error, match=match) as info:
        keras_rewrite.rewrite(model, passes)
    assert model_fingerprint(model) == before  # a failed rewrite leaves the model as it was
    return info.value


@pytest.mark.parametrize("factor, shown", [(-1, "-1"), ("big", "'big'"), (float("nan"), "nan")])
def test_pass_argument_out_of_range_or_of_the_wrong_type(factor, shown):
    with pytest.raises(keras_rewrite.PassError,
                       match=f"`factor`. Expected a float >= 0. Received: factor={shown}"):
        L2Regularization(factor)


def test_not_a_pass_and_unknown_pass_names():
    rewrite_fails(small_model(), [42], keras_rewrite.PassError, "received 42 of type int")
    rewrite_fails(small_model(), ["l3"], keras_rewrite.PassError,
                  r"unknown pass name 'l3'; expected one of \['l2', 'reorder'")


def noop(graph):
    return PassResult("noop", modified=False)


def dangling_edge(graph):
    graph.remove_edge("hidden", "head")  # head's input slot is left unfilled
    return PassResult("dangling_edge", modified=True)


def test_custom_pass_leaving_a_dangling_edge_is_named_with_the_node():
    error = rewrite_fails(small_model(), [noop, dangling_edge], keras_rewrite.PassError,
                          r"pass 'dangling_edge' \(after noop\) left the graph invalid")
    assert "'head' (Dense) takes tensor slots [0] but its incoming edges fill []" in str(error)


def make_cycle(graph):
    graph.add_edge("head", "hidden", slot=1, tensor_index=0)
    return PassResult("make_cycle", modified=True)


def test_custom_pass_making_a_cycle_is_named():
    error = rewrite_fails(small_model(), [make_cycle], keras_rewrite.PassError,
                          "pass 'make_cycle' left the graph invalid")
    assert "has a cycle through" in str(error)


def widen_head(graph):
    graph.nodes["head"]["spec"].config["units"] = 5
    return PassResult("widen_head", modified=True)


def test_custom_pass_changing_an_output_shape_names_the_layer_and_the_pass():
    error = rewrite_fails(small_model(), [noop, widen_head], keras_rewrite.ShapeMismatchError,
                          "layer 'head'")
    assert error.layer == "head" and error.expected == [(None, 2)]
    assert error.received == [(None, 5)]
    assert "after passes that modified the graph: widen_head" in str(error)


def break_config(graph):
    graph.nodes["hidden"]["spec"].config["units"] = -3
    return PassResult("break_config", modified=True)


def test_layer_whose_config_no_longer_builds_is_named():
    error = rewrite_fails(small_model(), [break_config], keras_rewrite.RebuildError,
                          "layer 'hidden': could not re-create Dense from its config")
    assert "after passes that modified the graph: break_config" in str(error)


def test_pass_raising_is_named_with_the_passes_before_it():
    def explode(graph):
        raise KeyError("no such node")

    rewrite_fails(small_model(), [noop, explode], keras_rewrite.PassError,
                  r"pass 'explode' \(after noop\) failed: KeyError")


class NotRegistered(layers.Layer):
    def call(self, x):
        return 2 * x


def test_unregistered_custom_layer_still_rewrites():
    # rewrite holds each layer's class, so unlike load_model it needs no registration.
    inputs = keras.Input((3,))
    model = keras.Model(inputs, NotRegistered(name="twice")(inputs))
    copy = keras_rewrite.rewrite(model)
    x = np.ones((1, 3), "float32")
    np.testing.assert_array_equal(np.asarray(copy(x)), 2 * x)
    assert type(copy.get_layer("twice")) is NotRegistered
