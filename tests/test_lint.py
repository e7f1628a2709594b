"""lint: each rule fires where the seed answer says it should, and fixed_by tells the truth."""
import keras
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.lint import RULES, Finding, lint, lint_graph
from seed_models import build_cnn, build_unet

L2 = keras.regularizers.L2(1e-4)


def model_of(*make, input_shape=(8, 8, 3), regularized=True):
    """Input -> the given layers (callables returning a layer)."""
    inputs = keras.Input(input_shape, name="x")
    x = inputs
    for m in make:
        x = m()(x)
    model = keras.Model(inputs, x)
    if regularized:  # keep the no-weight-regularization rule out of the way
        for layer in model.layers:
            if hasattr(layer, "kernel_regularizer"):
                layer.kernel.regularizer = L2
    return model


def conv(name="conv", **kw):
    return lambda: layers.Conv2D(4, 3, padding="same", name=name, **kw)


def named(cls, name, *args, **kw):
    return lambda: cls(*args, name=name, **kw)


def found(model_or_findings):
    findings = (model_or_findings if isinstance(model_or_findings, list)
                else lint(model_or_findings))
    return [(f.rule, f.layers, f.fixed_by) for f in findings]


def clean_model():
    """The seed answer's recommended block, regularized, with whole-channel dropout."""
    return model_of(conv(kernel_regularizer="l2"), named(layers.BatchNormalization, "bn"),
                    named(layers.ReLU, "relu"), named(layers.MaxPooling2D, "pool"),
                    named(layers.SpatialDropout2D, "drop", 0.2), named(layers.Flatten, "flat"),
                    named(layers.Dense, "head", 2), regularized=False)


def test_a_clean_model_has_no_findings():
    assert lint(clean_model()) == []


def test_finding_is_readable():
    (finding,) = lint(model_of(conv(), named(layers.ReLU, "relu"),
                               named(layers.BatchNormalization, "bn")))
    assert isinstance(finding, Finding) and finding.explanation == RULES[finding.rule]
    text = str(finding)
    assert text.startswith("[activation-before-bn] relu, bn (fixed by the 'reorder' pass): ")
    assert "half of the units" in text


# ------------------------------------------------------------------------------ each rule


def test_bn_after_dropout():
    model = model_of(conv(), named(layers.SpatialDropout2D, "drop", 0.2),
                     named(layers.BatchNormalization, "bn"))
    assert found(model) == [("bn-after-dropout", ("drop", "bn"), "reorder")]
    assert "variance shift" in lint(model)[0].explanation
    # Not after a conv/dense layer, so not in a reorder block: needs a design change.
    model = model_of(named(layers.Flatten, "flat"), named(layers.Dropout, "drop", 0.2),
                     named(layers.BatchNormalization, "bn"))
    assert found(model) == [("bn-after-dropout", ("drop", "bn"), None)]


def test_dropout_on_feature_maps():
    assert found(model_of(conv(), named(layers.Dropout, "drop", 0.2))) == [
        ("dropout-on-feature-maps", ("drop",), "spatial_dropout")]
    one_d = model_of(named(layers.Conv1D, "c1", 4, 3), named(layers.Dropout, "drop", 0.2),
                     input_shape=(10, 3))
    assert found(one_d) == [("dropout-on-feature-maps", ("drop",), "spatial_dropout")]
    # Not on a flat vector, not with an own noise_shape, not on SpatialDropout.
    assert lint(model_of(named(layers.Dense, "d", 4), named(layers.Dropout, "drop", 0.2),
                         input_shape=(5,))) == []
    assert lint(model_of(conv(), named(layers.Dropout, "drop", 0.2,
                                       noise_shape=(None, 1, 1, 4)))) == []


def test_dropout_before_pooling():
    model = model_of(conv(), named(layers.SpatialDropout2D, "sd", 0.1),
                     named(layers.Dropout, "drop", 0.2), named(layers.BatchNormalization, "bn"),
                     named(layers.ReLU, "relu"), named(layers.MaxPooling2D, "pool"))
    rules = found(model)
    assert ("dropout-before-pooling", ("drop", "pool"), "reorder") in rules
    assert "second largest" in RULES["dropout-before-pooling"]
    # Whole-channel dropout before pooling is fine (the SpatialDropout 'sd' gives no finding
    # of this rule); so is plain dropout before average pooling (the seed's argument is
    # about max pooling).
    assert [r for r in rules if r[0] == "dropout-before-pooling"] == [
        ("dropout-before-pooling", ("drop", "pool"), "reorder")]
    avg = model_of(conv(), named(layers.Dropout, "drop", 0.2),
                   named(layers.AveragePooling2D, "pool", 2))
    assert "dropout-before-pooling" not in [r[0] for r in found(avg)]
    # No conv/dense layer before it: the reorder pass does not touch it, spatial_dropout does.
    bare = model_of(named(layers.Dropout, "drop", 0.2), named(layers.MaxPooling2D, "pool"))
    assert ("dropout-before-pooling", ("drop", "pool"), "spatial_dropout") in found(bare)


def test_activation_before_bn():
    assert found(model_of(conv(), named(layers.ReLU, "relu"),
                          named(layers.MaxPooling2D, "pool"),
                          named(layers.BatchNormalization, "bn"))) == [
        ("activation-before-bn", ("relu", "bn"), "reorder")]
    fused = model_of(conv(activation="relu"), named(layers.BatchNormalization, "bn"))
    assert found(fused) == [("activation-before-bn", ("conv", "bn"), "reorder")]
    # A shared conv cannot be split for one call only: no pass fixes it.
    inputs = keras.Input((8, 8, 4), name="x")
    shared = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv",
                           kernel_regularizer="l2")
    y = layers.BatchNormalization(name="bn")(shared(inputs))
    model = keras.Model(inputs, layers.BatchNormalization(name="bn2")(shared(y)))
    assert found(model) == [("activation-before-bn", ("conv", "bn"), None),
                            ("activation-before-bn", ("conv", "bn2"), None)]
    # Linear activations do not count; BN before the activation is the good order.
    assert lint(model_of(conv(), named(layers.Activation, "lin", "linear"),
                         named(layers.BatchNormalization, "bn"))) == []
    assert lint(model_of(conv(), named(layers.BatchNormalization, "bn"),
                         named(layers.ReLU, "relu"))) == []


def test_no_weight_regularization():
    model = model_of(conv(), named(layers.Flatten, "flat"), named(layers.Dense, "head", 2),
                     regularized=False)
    assert found(model) == [("no-weight-regularization", ("conv", "head"), "l2")]
    assert "weight decay" in lint(model)[0].explanation
    # One regularized weight anywhere is enough: in the config, or set on the variable.
    assert lint(model_of(conv(kernel_regularizer="l2"), named(layers.Flatten, "flat"),
                         regularized=False)) == []
    assert lint(model_of(conv(), named(layers.Flatten, "flat"), regularized=True)) == []
    # Nothing that could be regularized: nothing to say.
    assert lint(model_of(named(layers.MaxPooling2D, "pool"), regularized=False)) == []


def test_bn_soon_after_dropout():
    one_conv = model_of(conv("c1"), named(layers.ReLU, "r1"),
                        named(layers.SpatialDropout2D, "drop", 0.2), conv("c2"),
                        named(layers.BatchNormalization, "bn"))
    assert found(one_conv) == [("bn-soon-after-dropout", ("drop", "bn"), None)]
    two_convs = model_of(conv("c1"), named(layers.SpatialDropout2D, "drop", 0.2), conv("c2"),
                         named(layers.ReLU, "r2"), conv("c3"),
                         named(layers.BatchNormalization, "bn"))
    assert lint(two_convs) == []


def test_nested_models_are_linted():
    inner = model_of(conv(), named(layers.ReLU, "relu"), named(layers.BatchNormalization, "bn"))
    inputs = keras.Input((8, 8, 3), name="outer_x")
    outer = keras.Model(inputs, layers.Flatten(name="flat")(inner(inputs)))
    assert found(outer) == [("activation-before-bn", ("relu", "bn"), "reorder")]
    assert found(lint_graph(keras_rewrite.to_graph(outer))) == found(outer)


# ------------------------------------------------------------------------------ the seeds


SEED_CNN_FINDINGS = [
    ("no-weight-regularization",
     ("conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "dense", "dense_1"), "l2"),
    ("dropout-on-feature-maps", ("dropout",), "spatial_dropout"),
    ("bn-soon-after-dropout", ("dropout", "batch_normalization_2"), None),
    ("dropout-on-feature-maps", ("dropout_1",), "spatial_dropout"),
    ("bn-soon-after-dropout", ("dropout_1", "batch_normalization_4"), None),
]


def fresh_names():
    keras.backend.clear_session()  # so the seed CNN's layers get the default names


def test_seed_cnn_findings():
    fresh_names()
    assert found(build_cnn(compile=False)) == SEED_CNN_FINDINGS


def test_seed_unet_only_lacks_regularization():
    (finding,) = lint(build_unet((32, 32, 3), compile=False))
    assert finding.rule == "no-weight-regularization" and len(finding.layers) == 23


def test_seed_cnn_after_the_three_passes_keeps_only_design_findings():
    fresh_names()
    model = build_cnn(compile=False)
    new = keras_rewrite.rewrite(model, ["l2", "spatial_dropout", "reorder"])
    assert found(new) == [r for r in SEED_CNN_FINDINGS if r[2] is None]


# ------------------------------------------------------------------------------ fixed_by is honest


def proposed_order_model():
    """The asker's proposed Conv -> Dropout -> BN -> ReLU -> MaxPool, twice, then a fused head."""
    inputs = keras.Input((16, 16, 3), name="x")
    x = inputs
    for i in range(2):
        x = layers.Conv2D(4, 3, name=f"conv{i}")(x)
        x = layers.Dropout(0.2, name=f"drop{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(8, activation="relu", name="dense")(x)
    x = layers.BatchNormalization(name="bn_head")(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


@pytest.mark.parametrize("build", [proposed_order_model, lambda: build_cnn(compile=False)],
                         ids=["proposed_order", "seed_cnn"])
def test_each_fixing_pass_removes_its_findings(build):
    model = build()
    before = found(model)
    fixers = sorted({r[2] for r in before if r[2] is not None})
    assert fixers
    for name in fixers:
        after = found(keras_rewrite.rewrite(model, [name]))
        for rule in before:
            if rule[2] == name:
                assert rule not in after, f"'{name}' claims to fix {rule} but it remains"


def test_proposed_order_findings_and_their_fix():
    model = proposed_order_model()
    rules = found(model)
    for i in range(2):
        assert ("bn-after-dropout", (f"drop{i}", f"bn{i}"), "reorder") in rules
        assert ("dropout-before-pooling", (f"drop{i}", f"pool{i}"), "reorder") in rules
    assert ("activation-before-bn", ("dense", "bn_head"), "reorder") in rules
    new = keras_rewrite.rewrite(model, ["l2", "spatial_dropout", "reorder"])
    assert [r for r in found(new) if r[2] is not None] == []
