"""keras_rewrite.graph.view: nodes you can hold, and edits that keep the graph valid."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite import GraphError, to_graph, validate
from keras_rewrite.passes import PassResult
from keras_rewrite.graph.view import View
from helpers import chain_model, edges_into, random_inputs, split_model


def two_branch_model():
    """x -> a (Dense), x -> b (Dense); out = b - a; `a` also feeds a second output."""
    inputs = keras.Input((4,), name="x")
    a = layers.Dense(3, name="a")(inputs)
    b = layers.Dense(3, name="b")(inputs)
    diff = layers.Subtract(name="sub")([b, a])
    return keras.Model(inputs, [diff, layers.ReLU(name="relu")(a)])


def test_inputs_are_slot_ordered_and_users_carry_their_slot():
    view = View(to_graph(two_branch_model()))
    sub = view["sub"]
    assert [(n.id, i) for n, i in sub.inputs] == [("b", 0), ("a", 0)]
    assert sorted((n.id, slot) for n, slot in view["a"].users) == [("relu", 0), ("sub", 1)]
    assert sub.layer_class is layers.Subtract and sub.class_name == "Subtract"
    assert view["relu"].users[0][0].kind == "output"


def test_config_is_read_only_and_set_config_never_writes_through_a_shared_dict():
    graph = to_graph(two_branch_model())
    view = View(graph)
    a = view["a"]
    with pytest.raises(TypeError):
        a.config["units"] = 5
    # A pass built another spec around the same config dict: editing one must not edit both.
    twin = a.spec.replace(name="twin")
    twin.config = a.spec.config
    assert a.set_config(activation="tanh") is True
    assert a.config["activation"] == "tanh" and twin.config["activation"] == "linear"
    assert a.spec.original_config["activation"] == "linear"
    assert a.set_config(activation="tanh") is False  # no change, nothing reported


def test_weights_read_lazily_from_the_original_and_writes_go_to_the_spec():
    model = two_branch_model()
    view = View(to_graph(model))
    a = view["a"]
    assert sorted(a.weights) == ["bias", "kernel"]
    np.testing.assert_array_equal(a.weights["kernel"], np.asarray(model.get_layer("a").kernel))
    assert a.spec.weights is None  # reading copies nothing into the graph
    a.weights["kernel"] = np.full((4, 3), 0.5, "float32")
    assert list(a.spec.weights) == ["kernel"]  # only what was written
    np.testing.assert_array_equal(a.weights["kernel"], 0.5)
    with pytest.raises(KeyError, match="has no weight 'gamma'; expected one of"):
        a.weights["gamma"]


def test_weights_set_through_the_view_are_assigned_and_reported_as_transformed():
    model = two_branch_model()

    def halve_kernel(graph):
        a = View(graph)["a"]
        a.weights["kernel"] = a.weights["kernel"] / 2
        return PassResult("halve", modified=True, outputs_unchanged=False)

    result = keras_rewrite.rewrite_with_report(model, [halve_kernel])
    new = result.model.get_layer("a")
    np.testing.assert_allclose(np.asarray(new.kernel), np.asarray(model.get_layer("a").kernel) / 2)
    record = result.report.layer("a")
    assert record.transformed == ["kernel"] and record.carried == ["bias"]


def test_shared_layer_is_one_spec_replace_changes_every_call():
    inputs = keras.Input((4,), name="x")
    shared = layers.ReLU(name="r")
    model = keras.Model(inputs, shared(shared(inputs) - 1.0))
    graph = to_graph(model)
    view = View(graph)
    first, second = (n for n in view.layers() if n.name == "r")
    assert first.shared and second.shared and len(first.calls) == 2
    view.replace(second, layers.LeakyReLU(negative_slope=0.5))
    validate(graph)
    assert first.layer_class is layers.LeakyReLU and first.spec is second.spec
    assert first.name == "r" and not view["x"].shared
    new = keras_rewrite.to_model(graph)
    x = np.array([[-2.0, 0.5, 3.0, -0.2]], "float32")
    once = np.where(x > 0, x, 0.5 * x) - 1.0
    np.testing.assert_allclose(new(x), np.where(once > 0, once, 0.5 * once), rtol=1e-6)


def test_replace_with_the_same_class_carries_weights_and_refuses_a_taken_name():
    model = two_branch_model()
    graph = to_graph(model)
    view = View(graph)
    view.replace(view["a"], layers.Dense(3, activation="tanh"))
    assert view["a"].spec.source is model.get_layer("a")  # weights carried by name
    with pytest.raises(GraphError, match="by one named 'b': expected a name no other layer"):
        view.replace(view["a"], layers.Dense(3), name="b")
    new = keras_rewrite.to_model(graph)
    np.testing.assert_array_equal(np.asarray(new.get_layer("a").kernel),
                                  np.asarray(model.get_layer("a").kernel))
    assert new.get_layer("a").get_config()["activation"] == "tanh"


def test_insert_before_one_slot_leaves_the_producers_other_users_alone():
    model = two_branch_model()
    graph = to_graph(model)
    view = View(graph)
    scaled = view.insert_before(view["sub"], layers.Rescaling(2.0, name="twice"), slot=1)
    validate(graph)
    assert [(n.id, i) for n, i in view["sub"].inputs] == [("b", 0), ("twice", 0)]
    assert [n.id for n, _ in view["relu"].inputs] == ["a"]
    assert scaled.inputs[0][0].id == "a"
    new = keras_rewrite.to_model(graph)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype("float32")
    a, b = model.get_layer("a")(x), model.get_layer("b")(x)
    np.testing.assert_allclose(new(x)[0], b - 2 * a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new(x)[1], model(x)[1], rtol=1e-6)


def test_insert_after_makes_a_fresh_name_and_all_users_read_it():
    graph = to_graph(two_branch_model())
    view = View(graph)
    node = view.insert_after(view["a"], layers.Dropout(0.5, name="b"))  # "b" is taken
    validate(graph)
    assert node.id == node.name == "b_1"
    assert sorted(u.id for u, _ in node.users) == ["relu", "sub"]


def test_remove_bypasses_and_refuses_when_shapes_would_not_fit():
    inputs = keras.Input((8, 8, 2), name="x")
    x = layers.MaxPooling2D(name="pool")(inputs)
    x = layers.Dropout(0.2, name="drop")(x)
    graph = to_graph(keras.Model(inputs, layers.Flatten(name="flat")(x)))
    view = View(graph)
    with pytest.raises(GraphError, match=r"cannot remove 'pool' \(MaxPooling2D\): it turns "
                                         r"shape \(None, 8, 8, 2\) into \(None, 4, 4, 2\)"):
        view.remove(view["pool"])
    view.remove(view["drop"])
    validate(graph)
    assert "drop" not in graph and [n.id for n, _ in view["flat"].inputs] == ["pool"]


def test_replace_run_keeps_listed_nodes_and_an_empty_run_bypasses():
    inputs = keras.Input((4,), name="x")
    x = layers.Dense(4, name="d")(inputs)
    x = layers.Dropout(0.1, name="drop")(x)
    x = layers.ReLU(name="relu")(x)
    graph = to_graph(keras.Model(inputs, layers.Dense(2, name="head")(x)))
    view = View(graph)
    chain = view.replace_run([view["drop"], view["relu"]], [view["relu"], layers.Dropout(0.3)])
    validate(graph)
    assert [n.class_name for n in chain] == ["ReLU", "Dropout"]
    assert [n.id for n, _ in view["head"].inputs] == [chain[-1].id]
    assert chain[-1].output_shapes == [(None, 4)]  # the run's shape, checked on rebuild
    view.replace_run(chain, [])
    validate(graph)
    assert [n.id for n, _ in view["head"].inputs] == ["d"]
    keras_rewrite.to_model(graph)


def test_iteration_is_topological_and_includes_nested_models():
    inner_in = keras.Input((4,), name="inner_x")
    inner = keras.Model(inner_in, layers.Dense(4, name="inner_dense")(inner_in), name="inner")
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, layers.Dense(2, name="head")(inner(inputs)))
    graph = to_graph(model)
    nodes = list(View(graph))
    ids = [n.id for n in nodes]
    assert ids.index("x") < ids.index("inner") < ids.index("inner_dense") < ids.index("head")
    dense = nodes[ids.index("inner_dense")]
    assert dense.graph is graph.nodes["inner"]["spec"].subgraph
    assert View(graph)["inner"].is_model
    dense.set_config(units=4, use_bias=False)
    new = keras_rewrite.to_model(graph)
    assert new.get_layer("inner").get_layer("inner_dense").bias is None

# ---------------------------------------------------------------- replace_run as a permutation
# (ReorderBlocks moves its runs this way: kept nodes keep their specs, so weights travel.)


def permute(g, run, new_order):
    view = View(g)
    return view.replace_run([view.node(g, n) for n in run], [view.node(g, n) for n in new_order])


def test_replace_run_permuting_rewires_and_keeps_specs():
    model = chain_model()
    g = to_graph(model)
    specs = {n: g.nodes[n]["spec"] for n in ("drop", "bn", "relu")}
    permute(g, ["drop", "bn", "relu"], ["bn", "relu", "drop"])
    validate(g)
    assert edges_into(g, "bn") == [("conv", 0, 0)]
    assert edges_into(g, "relu") == [("bn", 0, 0)]
    assert edges_into(g, "drop") == [("relu", 0, 0)]
    assert edges_into(g, "head") == [("drop", 0, 0)]
    assert all(g.nodes[n]["spec"] is s for n, s in specs.items())
    rebuilt = keras_rewrite.to_model(g)
    order = [l.name for l in rebuilt.layers]
    assert order.index("bn") < order.index("relu") < order.index("drop") < order.index("head")
    # Dropout is the identity at inference, so the permuted model computes the same function.
    x = random_inputs(model)
    np.testing.assert_allclose(np.asarray(rebuilt(x)), np.asarray(model(x)), atol=1e-6)


def test_replace_run_permuting_keeps_tensor_indices_at_both_ends():
    g = to_graph(split_model())
    split = next(n for n, d in g.nodes(data=True) if d["kind"] == "op")
    # The run's last node ('act') has two users, 'cat' (slot 1) and a model output: allowed,
    # and both move to the new last node.
    permute(g, ["d", "drop", "act"], ["act", "d", "drop"])
    validate(g)
    assert edges_into(g, "act") == [(split, 0, 1)]
    assert edges_into(g, "d") == [("act", 0, 0)]
    assert edges_into(g, "drop") == [("d", 0, 0)]
    assert edges_into(g, "cat") == sorted([(split, 0, 0), ("drop", 1, 0)])
    assert edges_into(g, "output:1") == [("drop", 0, 0)]


def test_replace_run_permuting_refuses_a_tensor_with_two_users_inside_the_run():
    inputs = keras.Input((4,), name="x")
    h = layers.Dense(4, name="d")(inputs)
    a = layers.ReLU(name="a")(h)
    b = layers.Dropout(0.1, name="b")(a)
    side = layers.Dense(2, name="side")(a)
    g = to_graph(keras.Model(inputs, [b, side]))
    with pytest.raises(keras_rewrite.GraphError, match=r"'a' \(ReLU\) as part of run .*expected "
                                                       r"its output to have one user \('b'\), "
                                                       r"received 2 users \['b', 'side'\]"):
        permute(g, ["a", "b"], ["b", "a"])
    validate(g)


def test_replace_run_permuting_refusals_leave_the_graph_alone():
    g = to_graph(chain_model())
    before = sorted(g.edges(data="slot"))
    with pytest.raises(keras_rewrite.GraphError, match=r"cannot keep Node\('relu'.*expected a node of the run"):
        permute(g, ["drop", "bn"], ["bn", "relu"])
    with pytest.raises(keras_rewrite.GraphError, match="expected its input to come from 'drop', "
                                                       "received it from 'bn'"):
        keras_rewrite.graph.edit.check_linear_run(g, ["drop", "relu"])
    with pytest.raises(keras_rewrite.GraphError, match="distinct"):
        keras_rewrite.graph.edit.check_linear_run(g, ["drop", "drop"])
    with pytest.raises(keras_rewrite.GraphError, match="kind 'output'"):
        permute(g, ["head", "output:0"], ["output:0", "head"])
    assert sorted(g.edges(data="slot")) == before


def test_replace_run_permuting_refuses_a_model_output_inside_the_run():
    inputs = keras.Input((4,), name="x")
    h = layers.Dense(4, name="d")(inputs)
    a = layers.ReLU(name="a")(h)
    b = layers.Dropout(0.1, name="b")(a)
    g = to_graph(keras.Model(inputs, [a, b]))
    with pytest.raises(keras_rewrite.GraphError, match=r"'a' \(ReLU\).*received 2 users "
                                                       r"\['b', 'output:0'\]"):
        permute(g, ["a", "b"], ["b", "a"])
