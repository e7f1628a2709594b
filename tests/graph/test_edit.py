"""Graph edits keep the graph valid, keep edge attributes right, and refuse what they cannot do."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.graph.edit import inline_model, insert_after, remove_node
from keras_rewrite.errors import GraphError
from keras_rewrite.rebuild.rebuilder import to_model
from keras_rewrite.graph.schema import LayerSpec, Slot, fresh_name, to_graph, validate
from helpers import chain_model, edges_into, random_inputs, split_model


def test_remove_node_reconnects_all_consumers_with_their_slots():
    g = to_graph(split_model())
    split = next(n for n, d in g.nodes(data=True) if d["kind"] == "op")
    # 'drop' feeds 'act' only; 'act' feeds 'cat' (slot 1) and the model's second output.
    remove_node(g, "act")
    validate(g)
    assert "act" not in g
    assert edges_into(g, "cat") == sorted([(split, 0, 0), ("drop", 1, 0)])
    assert edges_into(g, "output:1") == [("drop", 0, 0)]


def test_remove_node_takes_over_the_producers_tensor_index():
    inputs = keras.Input((6,), name="x")
    a, b = keras.ops.split(inputs, 2, axis=-1)
    h = layers.Activation("relu", name="act")(b)  # reads output 1 of the split
    model = keras.Model(inputs, layers.Concatenate(name="cat")([a, h]))
    g = to_graph(model)
    split = next(n for n, d in g.nodes(data=True) if d["kind"] == "op")
    remove_node(g, "act")
    validate(g)
    assert edges_into(g, "cat") == [(split, 0, 0), (split, 1, 1)]
    rebuilt = keras_rewrite.to_model(g, check=False)
    x = random_inputs(model)
    expected = np.concatenate([x[:, :3], x[:, 3:]], axis=-1)
    np.testing.assert_array_equal(np.asarray(rebuilt(x)), expected)


def test_remove_node_refuses_several_inputs_and_non_calls():
    g = to_graph(split_model())
    with pytest.raises(keras_rewrite.GraphError, match=r"'cat' \(Concatenate\).*one tensor "
                                                       r"input, received 2 inputs"):
        remove_node(g, "cat")
    with pytest.raises(keras_rewrite.GraphError, match="expected a layer or op call, received "
                                                       "a node of kind 'input'"):
        remove_node(g, "x")
    with pytest.raises(keras_rewrite.GraphError, match="has no node 'nope'"):
        remove_node(g, "nope")
    validate(g)  # refusals leave the graph as it was
    assert "cat" in g


def test_remove_node_refuses_a_node_whose_second_output_is_used():
    g = to_graph(split_model())
    split = next(n for n, d in g.nodes(data=True) if d["kind"] == "op")
    with pytest.raises(keras_rewrite.GraphError, match=r"one output, received 2 outputs"):
        remove_node(g, split)


def test_insert_after_moves_the_consumers_of_that_output_only():
    g = to_graph(split_model())
    split = next(n for n, d in g.nodes(data=True) if d["kind"] == "op")
    name = fresh_name(g, "scale")
    spec = LayerSpec(name, layers.Activation, {"name": name, "activation": "tanh"})
    new_id = insert_after(g, split, spec, tensor_index=1, output_shapes=[(None, 3)])
    validate(g)
    assert new_id == "scale"
    assert edges_into(g, new_id) == [(split, 0, 1)]
    assert edges_into(g, "d") == [(new_id, 0, 0)]
    assert edges_into(g, "cat") == sorted([(split, 0, 0), ("act", 1, 0)])  # output 0 untouched
    assert g.nodes[new_id]["call_args"] == ((Slot(0),), {})
    rebuilt = keras_rewrite.to_model(g)
    assert isinstance(rebuilt.get_layer("scale"), layers.Activation)


def test_insert_after_a_model_output_and_refusals():
    g = to_graph(chain_model())
    spec = LayerSpec("extra", layers.Activation, {"name": "extra", "activation": "relu"})
    insert_after(g, "head", spec)
    validate(g)
    assert edges_into(g, "output:0") == [("extra", 0, 0)]
    taken = LayerSpec("bn", layers.Activation, {"name": "bn", "activation": "relu"})
    with pytest.raises(keras_rewrite.GraphError, match="received one that node 'bn' already has"):
        insert_after(g, "conv", taken)
    with pytest.raises(keras_rewrite.GraphError, match=r"expected tensor_index in range\(1\), "
                                                       r"received 2"):
        insert_after(g, "conv", LayerSpec("z", layers.ReLU, {"name": "z"}), tensor_index=2)
    with pytest.raises(keras_rewrite.GraphError, match="exactly one Slot"):
        insert_after(g, "conv", LayerSpec("z", layers.ReLU, {"name": "z"}),
                     call_args=((Slot(0), Slot(1)), {}))
    with pytest.raises(keras_rewrite.GraphError, match="output node 'output:0'"):
        insert_after(g, "output:0", LayerSpec("z", layers.ReLU, {"name": "z"}))
    validate(g)


def test_insert_after_a_shared_spec_adds_a_second_call():
    g = to_graph(chain_model())
    spec = g.nodes["relu"]["spec"]
    new_id = insert_after(g, "relu", spec)
    validate(g)
    assert new_id == "relu:1" and g.nodes[new_id]["spec"] is spec


def tied_model():
    """A layer shared by a nested model and the model around it (like a tied embedding)."""
    shared = keras.layers.Dense(4, name="shared")
    x = keras.Input((4,), name="x")
    inner = keras.Model(x, keras.layers.Dense(4, name="inner_head")(shared(x)), name="inner")
    y = keras.Input((4,), name="y")
    return keras.Model(y, shared(inner(y)), name="outer")


def test_inline_model_wires_the_nested_calls_in_place_and_keeps_the_shared_layer_one():
    model = tied_model()
    g = to_graph(model)
    inline_model(g, "inner")
    validate(g)
    assert sorted(g.nodes) == ["inner_head", "output:0", "shared", "shared:1", "y"]
    assert g.nodes["shared"]["spec"] is g.nodes["shared:1"]["spec"]
    new = to_model(g)
    x = np.random.default_rng(0).random((2, 4)).astype("float32")
    assert np.array_equal(model.predict(x, verbose=0), new.predict(x, verbose=0))


def test_a_changed_model_with_a_layer_shared_across_levels_saves_and_loads(tmp_path):
    import keras_rewrite

    model = tied_model()
    result = keras_rewrite.rewrite_with_report(model, ["l2"])
    assert "nested model 'inner' inlined" in result.report.notes[0]
    result.model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((2, 4)).astype("float32")
    assert np.array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert loaded.get_layer("shared").kernel_regularizer is not None


def test_inline_model_refuses_a_layer_call():
    g = to_graph(tied_model())
    with pytest.raises(GraphError, match="expected a nested Functional or Sequential model"):
        inline_model(g, "shared")
