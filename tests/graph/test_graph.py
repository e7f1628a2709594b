"""The graph schema and its validator."""
import keras
import networkx as nx
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.graph.schema import Slot, iter_layer_nodes, topological_order


def small_model():
    inputs = keras.Input((4,), name="x")
    a = layers.Dense(4, name="a")(inputs)
    b = layers.Dense(4, name="b")(a)
    return keras.Model(inputs, layers.Add(name="add")([a, b]))


def test_schema_of_a_small_model():
    g = keras_rewrite.to_graph(small_model())
    keras_rewrite.validate(g)
    assert isinstance(g, nx.MultiDiGraph)
    assert g.graph["inputs"] == ["x"] and g.graph["outputs"] == ["output:0"]
    assert topological_order(g) == ["x", "a", "b", "add", "output:0"]
    add = g.nodes["add"]
    assert add["kind"] == "layer" and add["spec"].class_name == "Add"
    assert add["call_args"] == (([Slot(0), Slot(1)],), {})
    assert add["output_shapes"] == [(None, 4)]
    assert {(u, d["slot"]) for u, _, d in g.in_edges("add", data=True)} == {("a", 0), ("b", 1)}
    assert [n for _, n, _ in iter_layer_nodes(g)] == ["a", "b", "add"]


def test_validate_rejects_a_cycle():
    g = keras_rewrite.to_graph(small_model())
    g.add_edge("add", "a", slot=1, tensor_index=0)
    with pytest.raises(keras_rewrite.GraphError, match="cycle"):
        keras_rewrite.validate(g)


def test_validate_rejects_an_unfilled_slot():
    g = keras_rewrite.to_graph(small_model())
    g.remove_edge("b", "add")
    with pytest.raises(keras_rewrite.GraphError, match=r"'add' \(Add\) takes tensor slots \[0, 1\]"):
        keras_rewrite.validate(g)


def test_validate_rejects_two_layers_with_one_name():
    g = keras_rewrite.to_graph(small_model())
    g.nodes["b"]["spec"] = g.nodes["b"]["spec"].replace(name="a")
    with pytest.raises(keras_rewrite.GraphError, match="two different layers are named 'a'"):
        keras_rewrite.validate(g)


def test_validate_rejects_a_bad_tensor_index():
    g = keras_rewrite.to_graph(small_model())
    g.remove_edge("a", "b")
    g.add_edge("a", "b", slot=0, tensor_index=3)
    with pytest.raises(keras_rewrite.GraphError, match="takes output 3"):
        keras_rewrite.validate(g)


def test_validate_rejects_an_output_with_consumers():
    g = keras_rewrite.to_graph(small_model())
    g.add_edge("output:0", "b", slot=1, tensor_index=0)
    with pytest.raises(keras_rewrite.GraphError):
        keras_rewrite.validate(g)
