"""keras_rewrite.passes.rules: pattern + check + rewrite, as a pass and as a dry run."""
import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite import to_graph, validate
from keras_rewrite.passes.rules import L, Refusal, Rule, X
from keras_rewrite.graph.view import View

from helpers import conv_chain


class FoldBatchNorm(Rule):
    """Conv2D -> BatchNormalization becomes one Conv2D: w' = w*s, b' = (b - mean)*s + beta,
    s = gamma / sqrt(var + eps), per output channel (inference outputs equal up to rounding)."""

    pattern = L(layers.Conv2D) >> layers.BatchNormalization
    outputs_unchanged = True

    def check(self, match):
        if match[1].config["axis"] not in (-1, 3, [3], [-1]):
            return Refusal("BatchNormalization is not on the channel axis")

    def rewrite(self, match):
        conv, bn = match
        w, b = conv.weights, bn.weights
        scale = b["gamma"] / np.sqrt(b["moving_variance"] + bn.config["epsilon"])
        bias = w["bias"] if conv.config["use_bias"] else 0.0
        conv.set_config(use_bias=True)
        return [(conv, {"kernel": w["kernel"] * scale,
                        "bias": (bias - b["moving_mean"]) * scale + b["beta"]})]


def randomize_batchnorms(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(size=n),
                               rng.normal(size=n), rng.uniform(0.5, 2, n)])


def conv_bn_model():
    """c1 -> bn1 -> c2 -> bn2 -> [bn2, add(c3, bn3)]: c3's output fans out."""
    inputs = keras.Input((8, 8, 3), name="x")
    x = layers.BatchNormalization(name="bn1")(layers.Conv2D(4, 3, use_bias=False, name="c1")(inputs))
    x = layers.BatchNormalization(name="bn2")(layers.Conv2D(4, 3, name="c2")(x))
    c3 = layers.Conv2D(4, 1, name="c3")(x)
    model = keras.Model(inputs, [x, layers.Add(name="add")([c3, layers.BatchNormalization(name="bn3")(c3)])])
    randomize_batchnorms(model)
    return model


def test_pattern_elements_match_class_name_config_and_predicates():
    inputs = keras.Input((4,), name="x")
    x = layers.Dense(4, activation="relu", name="dense_relu")(inputs)
    x = layers.Dense(8, name="wide")(x)
    graph = to_graph(keras.Model(inputs, layers.ReLU(name="relu")(x)))
    view = View(graph)
    names = lambda element: [n.id for n in view.layers() if element.matches(n)]  # noqa: E731
    assert names(L(activation="relu")) == ["dense_relu"]
    assert names(L("Dense")) == ["dense_relu", "wide"]
    assert names(L(layers.Dense, units=lambda u: u > 4)) == ["wide"]
    assert names(L(layers.Dense) | layers.ReLU) == ["dense_relu", "wide", "relu"]
    assert names(L(where=lambda n: n.users[0][0].kind == "output")) == ["relu"]
    assert names(L(layers.Layer)) == ["dense_relu", "wide", "relu"]  # subclasses match
    with pytest.raises(TypeError, match="expected a layer class, a class name"):
        L(3)


def test_fold_batchnorm_keeps_predictions_reports_weights_and_refuses_fan_out():
    model = conv_bn_model()
    dry = FoldBatchNorm().dry_run(model)
    assert [m.names for m in dry.matches] == [["c1", "bn1"], ["c2", "bn2"]]
    assert [(m.names, m.reason) for m in dry.refusals] == [
        (["c3", "bn3"], "fan-out: the output of 'c3' inside the match also goes to ['add']")]
    assert "refused  c3 (Conv2D) >> bn3 (BatchNormalization): fan-out" in dry.table()

    result = keras_rewrite.rewrite_with_report(model, [FoldBatchNorm()])
    new = result.model
    assert [l.name for l in new.layers] == ["x", "c1", "c2", "c3", "bn3", "add"]
    changes = result.report.passes[0].changes
    assert [(c.layer, c.action) for c in changes] == [
        ("c1", "replaced"), ("c2", "replaced"), ("c3", "skipped")]
    assert sorted(result.report.layer("c1").transformed) == ["bias", "kernel"]
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype("float32")
    for got, want in zip(new(x), model(x, training=False)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # Applying it again finds nothing to do.
    again = keras_rewrite.rewrite_with_report(new, [FoldBatchNorm()])
    assert not again.report.passes[0].modified


def test_a_chain_whose_inner_output_is_a_model_output_is_refused_with_that_reason():
    inputs = keras.Input((8, 8, 3), name="x")
    c = layers.Conv2D(2, 3, name="c")(inputs)
    model = keras.Model(inputs, [c, layers.BatchNormalization(name="bn")(c)])
    (refused,) = FoldBatchNorm().dry_run(model).refusals
    assert refused.reason == ("the output of 'c' inside the match is also a model output "
                              "(output:0)")


def test_a_chain_through_a_shared_layer_is_refused():
    inputs = keras.Input((8, 8, 3), name="x")
    conv = layers.Conv2D(3, 1, name="c")
    y = layers.BatchNormalization(name="bn")(conv(conv(inputs)))
    (match,) = FoldBatchNorm().dry_run(keras.Model(inputs, y)).found
    assert match.names == ["c", "bn"]
    assert match.reason == ("layer 'c' is shared (called 2 times): rewriting the chain would "
                            "change its other calls too")


def test_check_refusal_and_rewrite_none_are_reported_as_skipped_with_the_reason():
    class Nope(Rule):
        pattern = layers.Dense

        def check(self, match):
            return Refusal("too wide") if match[0].config["units"] > 4 else None

        def rewrite(self, match):
            return None

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, layers.Dense(8, name="wide")(layers.Dense(2, name="narrow")(inputs)))
    result = keras_rewrite.rewrite_with_report(model, [Nope()])
    p = result.report.passes[0]
    assert not p.modified and p.outputs_unchanged is True
    assert [(c.layer, c.action, c.detail) for c in p.changes] == [
        ("narrow", "skipped", "narrow (Dense): Nope.rewrite() returned None"),
        ("wide", "skipped", "wide (Dense): too wide")]


def test_a_rule_rewrites_inside_a_nested_model():
    class DropoutToIdentity(Rule):
        pattern = layers.Dropout
        outputs_unchanged = True

        def rewrite(self, match):
            return []

    inner_in = keras.Input((4,), name="inner_x")
    inner = keras.Model(inner_in, layers.Dropout(0.5, name="drop")(
        layers.Dense(4, name="d")(inner_in)), name="inner")
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, inner(inputs))
    result = keras_rewrite.rewrite_with_report(model, [DropoutToIdentity()])
    assert [c.detail for c in result.report.passes[0].changes] == ["Dropout -> (removed)"]
    new_inner = result.model.get_layer("inner")
    assert [l.name for l in new_inner.layers] == ["inner_x", "d"]
    x = np.ones((1, 4), "float32")
    np.testing.assert_allclose(result.model(x), model(x), rtol=1e-6)


def test_a_chain_is_replaced_by_new_layers_with_their_weights():
    class DenseReluToDense(Rule):
        pattern = L(layers.Dense, activation="linear") >> layers.ReLU

        def rewrite(self, match):
            dense, _ = match
            return layers.Dense(dense.config["units"], activation="relu", name=dense.name)

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, layers.ReLU(name="r")(layers.Dense(3, name="d")(inputs)))
    graph = to_graph(model)
    result = DenseReluToDense()(graph)
    validate(graph)
    assert [c.detail for c in result.changes] == ["d >> r: Dense >> ReLU -> Dense"]
    new = keras_rewrite.to_model(graph)
    assert [l.name for l in new.layers] == ["x", "d"]
    x = np.random.default_rng(0).standard_normal((2, 4)).astype("float32")
    np.testing.assert_allclose(new(x), model(x), rtol=1e-6)  # weights carried by name


def count_checks(blocks):
    calls = []
    rule = FoldBatchNorm()
    rule.pattern = (L(where=lambda n: calls.append(1) or n.class_name == "Conv2D")
                    >> L(layers.BatchNormalization) >> layers.ReLU)
    found = rule.find(View(to_graph(conv_chain(blocks))))
    return len(calls), found


def test_matching_is_linear_in_model_size():
    small, found_small = count_checks(10)
    large, found_large = count_checks(20)
    assert len(found_small) == 10 and len(found_large) == 20
    # Per block, the first element is tried on Conv2D and Dropout once each (BN and ReLU are
    # already in a match): work grows with the model, not with its square.
    assert (small, large) == (2 * 10, 2 * 20)


# ------------------------------------------------------------------------------ DAG patterns


def hand_written_swish_model(extra_user=False):
    """x * sigmoid(x) spelled out, as keras.io code often does, after a Dense layer."""
    inputs = keras.Input((6,), name="x")
    h = layers.Dense(5, name="dense")(inputs)
    gate = layers.Activation("sigmoid", name="gate")(h)
    out = layers.Multiply(name="mul")([h, gate])
    outputs = [layers.Dense(2, name="head")(out)]
    if extra_user:
        outputs.append(layers.Dense(3, name="side")(gate))
    return keras.Model(inputs, outputs)


class HandWrittenSwish(Rule):
    # The same tensor x twice: as the multiplicand and as the sigmoid's input.
    pattern = L(layers.Multiply).of(
        X("x"), L(layers.Activation, activation="sigmoid").of(X("x")), any_order=True)
    outputs_unchanged = None  # silu(x) = x * sigmoid(x), up to float32 rounding

    def rewrite(self, match):
        return layers.Activation("silu", name=match[-1].name)


def test_a_dag_pattern_binds_one_tensor_twice_and_replaces_the_whole_match():
    model = hand_written_swish_model()
    dry = HandWrittenSwish().dry_run(model)
    (match,) = dry.matches
    assert match.names == ["gate", "mul"]
    assert [(p.id, i) for p, i in match.inputs] == [("dense", 0)]
    result = keras_rewrite.rewrite_with_report(model, [HandWrittenSwish()])
    new = result.model
    assert [type(l).__name__ for l in new.layers] == ["InputLayer", "Dense", "Activation",
                                                      "Dense"]
    assert new.get_layer("mul").get_config()["activation"] == "silu"
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    h = x @ model.get_layer("dense").kernel.numpy() + model.get_layer("dense").bias.numpy()
    swish = h / (1 + np.exp(-h))  # independent numpy: x * sigmoid(x)
    head = model.get_layer("head")
    expected = swish @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(np.asarray(new.predict(x, verbose=0)), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new.predict(x, verbose=0)),
                               np.asarray(model.predict(x, verbose=0)), atol=1e-5)
    assert result.report.passes[0].changes[0].detail == (
        "gate, mul: Activation >> Multiply -> Activation")


def test_a_dag_match_with_an_inner_user_outside_is_refused_and_unbound_tensors_do_not_match():
    model = hand_written_swish_model(extra_user=True)
    (match,) = HandWrittenSwish().dry_run(model).found
    assert match.reason == "fan-out: the output of 'gate' inside the match also goes to ['side']"
    # x * sigmoid(y) with x != y is not the pattern.
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    other = keras.Model([a, b], layers.Multiply(name="mul")(
        [a, layers.Activation("sigmoid", name="gate")(b)]))
    assert HandWrittenSwish().dry_run(other).found == []


def test_a_residual_dag_pattern_with_a_chain_argument():
    inputs = keras.Input((8, 8, 4), name="x")
    y = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    y = layers.BatchNormalization(name="bn")(y)
    out = layers.Add(name="add")([inputs, y])  # skip first: any_order finds it
    model = keras.Model(inputs, out)

    class Residual(Rule):
        pattern = L(layers.Add).of(L(layers.Conv2D) >> layers.BatchNormalization, X("skip"),
                                   any_order=True)

    (match,) = Residual().dry_run(model).matches
    assert match.names == ["conv", "bn", "add"]
    assert [(p.id, i) for p, i in match.inputs] == [("x", 0)]
    strict = L(layers.Add).of(L(layers.Conv2D) >> layers.BatchNormalization, X("skip"))

    class InOrder(Rule):
        pattern = strict

    assert InOrder().dry_run(model).found == []  # slot 0 is the skip, not the chain
    assert "any_order=True" in repr(Residual.pattern)
