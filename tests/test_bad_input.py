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
from keras_rewrite.rebuild import recursion


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
                  r"unknown pass name 'l3'; expected one of \[.*'l2', .*'reorder'")


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


# ----------------------------------------------------------- library misuse (issue 11 findings)


def test_a_pass_editing_a_numpy_constant_of_a_call_leaves_the_original_alone():
    inputs = keras.Input((3,), name="x")
    offset = np.ones(3, "float32")
    model = keras.Model(inputs, keras.ops.add(inputs, offset))
    x = np.zeros((2, 3), "float32")
    before = model.predict(x, verbose=0)

    def scale_constants(graph):
        for _, data in graph.nodes(data=True):
            for leaf in keras.tree.flatten(data["call_args"] or ()):
                if isinstance(leaf, np.ndarray):
                    leaf *= 10
        return PassResult("scale_constants", modified=True, outputs_unchanged=False)

    new = keras_rewrite.rewrite(model, [scale_constants])
    assert np.array_equal(model.predict(x, verbose=0), before)
    assert np.array_equal(new.predict(x, verbose=0), before * 10)


def test_a_compiled_copy_does_not_share_metric_objects():
    model = small_model()
    auc = keras.metrics.MeanAbsoluteError(name="mae")
    model.compile(optimizer="sgd", loss=keras.losses.MeanSquaredError(), metrics=[auc])
    new = keras_rewrite.rewrite(model)
    x, y = np.ones((4, 4), "float32"), np.full((4, 2), 3.0, "float32")
    new.evaluate(x, y, verbose=0)
    assert float(auc.result()) == 0.0  # the original's metric saw nothing
    assert new._compile_config.config["metrics"][0] is not auc


@pytest.mark.parametrize("damage,match", [
    (lambda g: g.graph.__setitem__("output_structure", [0, 1]), r"output_structure.*positions"),
    (lambda g: g.graph.__setitem__("name", 7), r"model name must be a non-empty str"),
])
def test_a_pass_that_breaks_the_model_structure_or_name_is_a_pass_error_naming_it(damage, match):
    def breaker(graph):
        damage(graph)
        return PassResult("breaker", modified=True)

    rewrite_fails(small_model(), [breaker], keras_rewrite.PassError,
                  rf"pass 'breaker' left the graph invalid: .*{match}")


def test_rewrite_callback_failing_midway_leaves_the_model_as_it_was():
    model = small_model()
    model.compile(optimizer="sgd", loss="mse")

    class Fails:
        structural = False
        name = "fails"

        def apply_in_place(self, model):
            raise RuntimeError("boom")

        def __call__(self, graph):
            raise RuntimeError("boom")

    before = [layer.get_config() for layer in model.layers]
    callback = keras_rewrite.RewriteCallback([L2Regularization(0.1), Fails()])
    with pytest.raises(keras_rewrite.PassError, match=r"pass 'fails' failed.*left as it was "
                                                      r"\(the changes of L2Regularization"):
        model.fit(np.ones((2, 4)), np.ones((2, 2)), callbacks=[callback], verbose=0)
    assert [layer.get_config() for layer in model.layers] == before
    assert all(v.regularizer is None for v in model.trainable_weights)
    assert model.losses == []


def test_the_recursion_limit_is_restored_after_a_deep_rewrite():
    import sys

    from helpers import conv_chain

    model = conv_chain(60)  # 241 nodes: a rewrite raises a limit of 1000 for Keras's build
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        keras_rewrite.rewrite(model, ["l2"])
        assert sys.getrecursionlimit() == 1000
    finally:
        sys.setrecursionlimit(limit)


def test_overlapping_recursion_limits_end_at_the_callers_whatever_the_order():
    import sys

    from keras_rewrite import _keras

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        for order in ("first in, first out", "last in, first out"):
            a, b = recursion.recursion_limit_for(100), recursion.recursion_limit_for(500)
            a.__enter__()
            assert sys.getrecursionlimit() == 2400
            b.__enter__()
            assert sys.getrecursionlimit() == 4000
            first, second = (a, b) if order == "first in, first out" else (b, a)
            first.__exit__(None, None, None)
            assert sys.getrecursionlimit() == (4000 if first is a else 2400), order
            second.__exit__(None, None, None)
            assert sys.getrecursionlimit() == 1000, order
        # a limit the caller sets while a call runs is the one restored
        with recursion.recursion_limit_for(100):
            sys.setrecursionlimit(3000)
            with recursion.recursion_limit_for(1000):
                assert sys.getrecursionlimit() == 6000
            assert sys.getrecursionlimit() == 3000
        assert sys.getrecursionlimit() == 3000
    finally:
        sys.setrecursionlimit(limit)


def test_rewrites_in_threads_overlap_and_leave_the_callers_recursion_limit(monkeypatch):
    import sys
    import threading

    from helpers import conv_chain
    from keras_rewrite.rebuild import rebuilder as rebuild

    models = [conv_chain(blocks) for blocks in (1, 2, 3, 4)]  # different needs
    barrier = threading.Barrier(len(models), timeout=60)
    inside = []
    build = rebuild._Rebuilder.build

    def build_when_all_are_inside(self, graph):
        if not getattr(self, "_waited", False):  # the outer model's build, not nested ones
            self._waited = True
            barrier.wait()  # every thread is inside its raised limit at once
            inside.append(sys.getrecursionlimit())
        return build(self, graph)

    monkeypatch.setattr(rebuild._Rebuilder, "build", build_when_all_are_inside)
    results, errors = {}, []

    def run(i):
        try:
            results[i] = keras_rewrite.rewrite(models[i], ["l2"])
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(models))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        assert sys.getrecursionlimit() == 1000
    finally:
        sys.setrecursionlimit(limit)
    assert len(inside) == 4 and min(inside) >= 2000 + 4 * (4 * 4 + 2)  # the deepest one's need
    assert sorted(results) == [0, 1, 2, 3]
    assert all(len(results[i].layers) == len(models[i].layers) for i in results)
