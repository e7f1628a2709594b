"""ReorderBlocks: the recommended order, weights that travel, and an honest verdict."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.graph.schema import to_graph, validate
from keras_rewrite.passes import ReorderBlocks
from keras_rewrite.passes.reorder import find_blocks
from helpers import predict, random_inputs
from seed_models import build_cnn


def set_bn(bn, seed=0, negative_gamma=False):
    """Give a BatchNormalization non-trivial weights (positive scale unless asked otherwise)."""
    rng = np.random.default_rng(seed)
    c = bn.gamma.shape[0]
    gamma = rng.uniform(0.5, 2.0, c)
    if negative_gamma:
        gamma[0] = -gamma[0]
    bn.set_weights([gamma, rng.normal(0, 1, c), rng.normal(0, 1, c), rng.uniform(0.5, 2, c)])


def chain(*make, input_shape=(8, 8, 3)):
    """Conv2D 'conv' then the given layers (callables returning a layer), as a Functional model."""
    inputs = keras.Input(input_shape, name="x")
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    for m in make:
        x = m()(x)
    return keras.Model(inputs, x)


def call_order(model):
    """Layer names in call order from the input (model.layers is in call order for chains)."""
    return [l.name for l in model.layers if not isinstance(l, layers.InputLayer)]


def run_pass(model, **kwargs):
    g = to_graph(model)
    result = ReorderBlocks(**kwargs)(g)
    validate(g)
    return g, result


def max_diff(a, b, x):
    return float(np.max(np.abs(predict(a, x)[0] - predict(b, x)[0])))


# ------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize("order, match", [
    ("bn", "received order='bn'"),
    (("bn", "relu"), r"unknown key\(s\) \['relu'\]"),
    (("bn", "bn"), r"each once.*received order=\('bn', 'bn'\)"),
    ((), "at least one"),
    (3, "received order=3"),
])
def test_order_is_validated(order, match):
    with pytest.raises(keras_rewrite.PassError, match="expected order to be a sequence of "
                                                      "distinct keys from"):
        ReorderBlocks(order=order)
    with pytest.raises(keras_rewrite.PassError, match=match):
        ReorderBlocks(order=order)


def test_split_flag_is_validated():
    with pytest.raises(keras_rewrite.PassError, match="split_fused_activation to be True or "
                                                      "False; received split_fused_activation='no'"):
        ReorderBlocks(split_fused_activation="no")


# ------------------------------------------------------------------------------ the seed chain


def seed_chain():
    """The asker's proposed order, with plain Dropout: Conv -> Dropout -> BN -> ReLU -> MaxPool."""
    model = chain(lambda: layers.Dropout(0.2, name="drop"),
                  lambda: layers.BatchNormalization(name="bn"),
                  lambda: layers.ReLU(name="relu"),
                  lambda: layers.MaxPooling2D(name="pool"))
    set_bn(model.get_layer("bn"))
    return model


def test_dropout_moves_to_the_end_and_bn_keeps_its_weights():
    model = seed_chain()
    result = keras_rewrite.rewrite_with_report(model, ["reorder"])
    new = result.model
    assert call_order(new) == ["conv", "bn", "relu", "pool", "drop"]
    old_bn, new_bn = model.get_layer("bn"), new.get_layer("bn")
    assert len(new_bn.weights) == 4
    for a, b in zip(old_bn.weights, new_bn.weights):
        assert a.name == b.name and np.array_equal(np.asarray(a), np.asarray(b)), a.name
    assert new.output_shape == model.output_shape
    (pass_result,) = result.report.passes
    assert pass_result.modified and pass_result.changed_layers == ["conv"]
    assert pass_result.changes[0].detail.startswith("drop, bn, relu, pool -> bn, relu, pool, drop")
    # Only the Dropout moved, and Dropout is the identity at inference: provably unchanged.
    assert pass_result.outputs_unchanged is True and result.report.outputs_unchanged is True
    x = random_inputs(model)
    assert max_diff(model, new, x) <= 1e-6


def test_second_run_is_a_no_op():
    g = to_graph(seed_chain())
    assert ReorderBlocks()(g).modified
    edges = sorted(g.edges(data=True))
    again = ReorderBlocks()(g)
    validate(g)
    assert not again.modified and again.changes == [] and again.outputs_unchanged is True
    assert sorted(g.edges(data=True)) == edges


def test_moved_nodes_lose_output_shapes_and_pooling_keeps_them():
    model = chain(lambda: layers.MaxPooling2D(name="pool"), lambda: layers.ReLU(name="relu"),
                  lambda: layers.Dropout(0.3, name="drop"))
    g, result = run_pass(model)
    assert result.modified
    assert g.nodes["relu"]["output_shapes"] is None  # now sees the 8x8 map, not 4x4
    assert g.nodes["pool"]["output_shapes"] == [(None, 4, 4, 4)]
    assert g.nodes["drop"]["output_shapes"] == [(None, 4, 4, 4)]  # still after the pooling
    assert g.nodes["conv"]["output_shapes"] == [(None, 8, 8, 4)]


# ------------------------------------------------------------------------------ the verdict


def test_relu_across_max_pooling_is_exact():
    model = chain(lambda: layers.MaxPooling2D(name="pool"), lambda: layers.ReLU(name="relu"),
                  lambda: layers.Dropout(0.3, name="drop"))
    result = keras_rewrite.rewrite_with_report(model, ["reorder"])
    assert call_order(result.model) == ["conv", "relu", "pool", "drop"]
    assert result.report.passes[0].outputs_unchanged is True
    assert "commutes with max pooling 'pool'" in result.report.passes[0].changes[0].detail
    x = random_inputs(model, batch=4)
    assert max_diff(model, result.model, x) <= 1e-6


@pytest.mark.parametrize("pool", [layers.MaxPooling2D, layers.AveragePooling2D])
def test_bn_with_positive_scale_across_pooling_is_exact(pool):
    model = chain(lambda: pool(2, name="pool"), lambda: layers.BatchNormalization(name="bn"))
    set_bn(model.get_layer("bn"), seed=1)
    result = keras_rewrite.rewrite_with_report(model, ["reorder"])
    assert call_order(result.model) == ["conv", "bn", "pool"]
    assert result.report.passes[0].outputs_unchanged is True
    assert max_diff(model, result.model, random_inputs(model, batch=4)) <= 1e-5


def test_bn_with_a_negative_scale_across_max_pooling_is_reported_changed():
    model = chain(lambda: layers.MaxPooling2D(name="pool"),
                  lambda: layers.BatchNormalization(name="bn"))
    set_bn(model.get_layer("bn"), seed=1, negative_gamma=True)
    result = keras_rewrite.rewrite_with_report(model, ["reorder"])
    pass_result = result.report.passes[0]
    assert pass_result.modified and pass_result.outputs_unchanged is False
    assert "1 channel(s) with gamma/sqrt(var+eps) < 0" in pass_result.changes[0].detail
    # And the verdict is right: the flipped channel's max became a min.
    assert max_diff(model, result.model, random_inputs(model, batch=4)) > 1e-3


def test_bn_with_a_negative_scale_across_average_pooling_is_still_exact():
    model = chain(lambda: layers.AveragePooling2D(2, name="pool"),
                  lambda: layers.BatchNormalization(name="bn"))
    set_bn(model.get_layer("bn"), seed=1, negative_gamma=True)
    result = keras_rewrite.rewrite_with_report(model, ["reorder"])
    assert result.report.passes[0].outputs_unchanged is True
    assert max_diff(model, result.model, random_inputs(model, batch=4)) <= 1e-5


def test_bn_across_an_activation_is_reported_changed():
    model = chain(lambda: layers.ReLU(name="relu"), lambda: layers.BatchNormalization(name="bn"))
    set_bn(model.get_layer("bn"), seed=2)
    result = keras_rewrite.rewrite_with_report(model, ["reorder"])
    pass_result = result.report.passes[0]
    assert call_order(result.model) == ["conv", "bn", "relu"]
    assert pass_result.outputs_unchanged is False and result.report.outputs_unchanged is False
    assert "'bn' moved across activation 'relu'" in pass_result.changes[0].detail
    assert "fine-tune" in pass_result.changes[0].detail
    # Noted, not hidden: the outputs really differ, the model needs fine-tuning.
    assert max_diff(model, result.model, random_inputs(model, batch=4)) > 1e-3


@pytest.mark.parametrize("act, exact", [
    (lambda: layers.Activation("swish", name="act"), False),  # dips below zero: not monotonic
    (lambda: layers.Softmax(name="act"), False),  # mixes channels
    (lambda: layers.Activation("gelu", name="act"), False),
    (lambda: layers.ReLU(max_value=6.0, name="act"), True),
    (lambda: layers.Activation("tanh", name="act"), True),
    (lambda: layers.ELU(name="act"), True),
])
def test_activation_across_max_pooling_needs_monotonicity(act, exact):
    model = chain(lambda: layers.MaxPooling2D(name="pool"), act)
    _, result = run_pass(model)
    assert result.modified and result.outputs_unchanged is exact


def test_prelu_alpha_is_checked_on_the_weights():
    model = chain(lambda: layers.MaxPooling2D(name="pool"),
                  lambda: layers.PReLU(shared_axes=[1, 2], name="act"))
    prelu = model.get_layer("act")
    prelu.set_weights([np.full(prelu.alpha.shape, 0.25)])
    result = keras_rewrite.rewrite_with_report(model, ["reorder"])
    assert result.report.passes[0].outputs_unchanged is True
    assert max_diff(model, result.model, random_inputs(model)) <= 1e-6
    prelu.set_weights([np.full(prelu.alpha.shape, -0.25)])
    _, again = run_pass(model)
    assert again.outputs_unchanged is False


# ------------------------------------------------------------------------------ fused activation


def test_fused_activation_is_split_so_bn_comes_between():
    inputs = keras.Input((8, 8, 3), name="x")
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, layers.MaxPooling2D(name="pool")(x))
    set_bn(model.get_layer("bn"))
    g, result = run_pass(model)
    assert g.nodes["conv"]["spec"].config["activation"] == "linear"
    act = g.nodes["conv_activation"]
    assert act["spec"].cls is layers.Activation and act["spec"].config["activation"] == "relu"
    assert act["spec"].source is None and act["meta"]["created_by"] == "ReorderBlocks"
    assert result.outputs_unchanged is False  # BN now sees pre-activation values
    assert "conv's fused activation, bn, pool -> bn, conv's fused activation, pool" in \
        result.changes[0].detail
    new = keras_rewrite.rewrite(model, ["reorder"])
    assert call_order(new) == ["conv", "bn", "conv_activation", "pool"]
    assert new.get_layer("conv").get_config()["activation"] == "linear"
    for a, b in zip(model.get_layer("conv").weights, new.get_layer("conv").weights):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert model.get_layer("conv").get_config()["activation"] == "relu"  # caller's model intact
    assert not ReorderBlocks()(g).modified


def test_split_alone_is_exact_and_gets_a_fresh_name():
    # Dense(relu) -> Dropout -> BN: split, then BN first and the Dropout last.
    inputs = keras.Input((5,), name="x")
    x = layers.Dense(4, activation="relu", name="dense")(inputs)
    x = layers.Dropout(0.5, name="drop")(x)
    x = layers.BatchNormalization(name="bn")(x)
    out = layers.Dense(2, name="dense_activation")(x)  # takes the obvious name; ends the run
    model = keras.Model(inputs, out)
    g, result = run_pass(model)
    assert "dense_activation_1" in g and result.modified
    new = keras_rewrite.rewrite(model, ["reorder"])
    assert call_order(new) == ["dense", "bn", "dense_activation_1", "drop", "dense_activation"]


def test_no_split_when_disabled_or_shared():
    inputs = keras.Input((8, 8, 3), name="x")
    conv = layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")
    x = layers.BatchNormalization(name="bn")(conv(inputs))
    model = keras.Model(inputs, layers.BatchNormalization(name="bn2")(conv(x)))
    _, result = run_pass(model)
    assert not result.modified
    assert [c.action for c in result.changes] == ["skipped", "skipped"]
    assert "layer 'conv' is called 2 times" in result.changes[0].detail
    plain = chain(lambda: layers.BatchNormalization(name="bn"))
    _, result = run_pass(plain, split_fused_activation=False)
    assert not result.modified and result.changes == []


# ------------------------------------------------------------------------------ what is left alone


def test_a_tensor_with_two_consumers_breaks_the_run():
    inputs = keras.Input((8, 8, 3), name="x")
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    d = layers.Dropout(0.2, name="drop")(x)
    b = layers.BatchNormalization(name="bn")(d)
    side = layers.Conv2D(2, 1, name="side")(d)  # dropout output used twice
    model = keras.Model(inputs, [b, side])
    g, result = run_pass(model)
    assert not result.modified
    assert [u for u, _ in g.in_edges("bn")] == ["drop"]


def test_a_model_output_inside_the_run_breaks_it():
    inputs = keras.Input((8, 8, 3), name="x")
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    d = layers.Dropout(0.2, name="drop")(x)
    model = keras.Model(inputs, [d, layers.BatchNormalization(name="bn")(d)])
    g, result = run_pass(model)
    assert not result.modified
    assert [u for u, _ in g.in_edges("bn")] == ["drop"]


def test_layers_outside_order_end_a_run():
    model = chain(lambda: layers.Dropout(0.2, name="drop"),
                  lambda: layers.BatchNormalization(name="bn"),
                  lambda: layers.MaxPooling2D(name="pool"),
                  lambda: layers.ReLU(name="relu"))
    g, result = run_pass(model, order=("bn", "drop"))
    assert result.modified
    new = keras_rewrite.rewrite(model, [ReorderBlocks(order=("bn", "drop"))])
    assert call_order(new) == ["conv", "bn", "drop", "pool", "relu"]


def test_shape_unsafe_moves_are_skipped_with_a_reason():
    per_position = chain(lambda: layers.MaxPooling2D(name="pool"),
                         lambda: layers.PReLU(name="act"))
    _, result = run_pass(per_position)
    assert not result.modified
    assert "per-position alpha" in result.changes[0].detail
    wrong_axis = chain(lambda: layers.MaxPooling2D(name="pool"),
                       lambda: layers.BatchNormalization(axis=1, name="bn"))
    _, result = run_pass(wrong_axis)
    assert not result.modified and result.changes[0].action == "skipped"
    assert "normalizes axis 1" in result.changes[0].detail
    # The same axis spelled for channels_first pooling is the channel axis: reordered.
    inputs = keras.Input((3, 8, 8), name="x")
    x = layers.Conv2D(4, 3, padding="same", data_format="channels_first", name="conv")(inputs)
    x = layers.MaxPooling2D(data_format="channels_first", name="pool")(x)
    first = keras.Model(inputs, layers.BatchNormalization(axis=-3, name="bn")(x))
    g, result = run_pass(first)
    assert result.modified and [u for u, _ in g.in_edges("bn")] == ["conv"]


# ------------------------------------------------------------------------------ via rewrite


def test_short_name_and_nested_model():
    inner = seed_chain()
    inputs = keras.Input((8, 8, 3), name="outer_x")
    model = keras.Model(inputs, layers.Flatten(name="flat")(inner(inputs)))
    new = keras_rewrite.rewrite(model, ["reorder"])
    assert call_order(new.get_layer(inner.name)) == ["conv", "bn", "relu", "pool", "drop"]
    assert max_diff(model, new, random_inputs(model)) <= 1e-6


def test_seed_cnn_is_already_in_order():
    model = build_cnn(compile=False)
    result = keras_rewrite.rewrite_with_report(model, ["reorder"])
    assert not result.report.passes[0].modified
    assert isinstance(result.model, keras.Sequential)
    assert call_order(result.model) == call_order(model)
    blocks = find_blocks(to_graph(model))
    assert len(blocks) == 5 and not any(b.needs_change for b in blocks)


def test_seed_cnn_in_the_askers_proposed_order_is_rewritten():
    """Conv -> SpatialDropout -> BN -> ReLU -> MaxPool, as the seed question proposes."""
    model = keras.Sequential([keras.Input((16, 16, 3))])
    for filters in (8, 16):
        model.add(layers.Conv2D(filters, 3))
        model.add(layers.SpatialDropout2D(0.2))
        model.add(layers.BatchNormalization())
        model.add(layers.Activation("relu"))
        model.add(layers.MaxPooling2D())
    model.add(layers.Flatten())
    model.add(layers.Dense(10, activation="softmax"))
    result = keras_rewrite.rewrite_with_report(model, ["reorder"])
    new = result.model
    assert isinstance(new, keras.Sequential)
    kinds = [type(l).__name__ for l in new.layers]
    block = ["Conv2D", "BatchNormalization", "Activation", "MaxPooling2D", "SpatialDropout2D"]
    assert kinds == block * 2 + ["Flatten", "Dense"]
    assert result.report.passes[0].outputs_unchanged is True  # only dropouts moved
    assert max_diff(model, new, random_inputs(model)) <= 1e-6
    graph = to_graph(new)
    validate(graph)
    assert not ReorderBlocks()(graph).modified
