"""lint: each rule fires where it should and not on the fixed model; fixed_by names a
registered pass and tells the truth; lint(model, fix=True) and `keras-rewrite lint --fix/--diff`."""
import keras
import numpy as np
import pytest
from keras import layers

import importlib

import keras_rewrite
from keras_rewrite.errors import RewriteError
from keras_rewrite.analysis.lint import (FIX_ORDER, RULES, Finding, LintReport, fix_plan, lint,
                                lint_graph)
from keras_rewrite.passes import registry
from seed_models import build_cnn, build_unet

lint_module = importlib.import_module("keras_rewrite.analysis.lint.checker")  # the package's `lint` is the function
rules_module = importlib.import_module("keras_rewrite.analysis.lint.rules")

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
            if hasattr(layer, "kernel_regularizer"):  # both, as the l2 pass does in place
                layer.kernel_regularizer = L2
                layer.kernel.regularizer = L2
    return model


def conv(name="conv", use_bias=False, **kw):
    """A conv layer; without a bias unless asked (keeps bias-before-bn out of the way)."""
    return lambda: layers.Conv2D(4, 3, padding="same", name=name, use_bias=use_bias, **kw)


def named(cls, name, *args, **kw):
    return lambda: cls(*args, name=name, **kw)


def found(model_or_findings, **kw):
    findings = (model_or_findings if isinstance(model_or_findings, list)
                else lint(model_or_findings, **kw))
    return [(f.rule, f.layers, f.fixed_by) for f in findings]


def rules_of(findings):
    return [f.rule for f in findings]


def predictions(model, x):
    return np.asarray(model(x, training=False))


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
    assert isinstance(finding, Finding) and finding.explanation == RULES[finding.rule].explanation
    text = str(finding)
    assert text.startswith("[activation-before-bn] relu, bn (fixed by the 'reorder' pass): ")
    assert "half of the units" in text


# ------------------------------------------------------------------------------ the rule table


def test_every_rule_s_fix_names_a_registered_pass():
    registered = registry.passes()
    for rule in RULES.values():
        for name in rule.fixes:
            assert name in registered, f"rule {rule.id} names unknown pass {name!r}"
            assert name in FIX_ORDER, f"lint(fix=True) would never run {name!r}"
        assert rule.profile in rules_module.PROFILES
        assert rule.id in lint_module.__doc__  # the module docstring's table lists it
    assert set(FIX_ORDER) <= set(registered)
    assert len(set(FIX_ORDER)) == len(FIX_ORDER)


def test_a_finding_must_name_one_of_its_rule_s_fixes():
    with pytest.raises(RewriteError, match="names fixed_by='l2'"):
        rules_module._finding("bias-before-bn", ["conv", "bn"], "l2")


def test_bad_arguments():
    with pytest.raises(RewriteError, match="Expected profile='training' or profile="
                                           "'inference'. Received: profile='export'"):
        lint(clean_model(), profile="export")
    with pytest.raises(RewriteError, match="Received: fix='yes'"):
        lint(clean_model(), fix="yes")


# ------------------------------------------------------------------------------ the seed rules


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
    assert "second largest" in RULES["dropout-before-pooling"].explanation
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
    # An optimizer with weight_decay regularizes every weight: L2 on top would be twice.
    model.compile(optimizer=keras.optimizers.AdamW(weight_decay=1e-4), loss="mse")
    assert "no-weight-regularization" not in rules_of(lint(model))
    assert "no-weight-regularization" in rules_of(lint_graph(keras_rewrite.to_graph(model)))


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


# ------------------------------------------------------------------------------ regularization


def dense_model(*, kernel_regularizer="l2", bias_regularizer=None, bn=False):
    inputs = keras.Input((4,), name="x")
    x = layers.BatchNormalization(name="bn")(inputs) if bn else inputs
    x = layers.Dense(3, kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                     name="d")(x)
    return keras.Model(inputs, layers.Dense(2, use_bias=False, kernel_regularizer="l2",
                                            name="head")(x))


def test_l2_with_weight_decay():
    model = dense_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1, weight_decay=1e-4), loss="mse")
    l2, decay = lint(model)
    assert (l2.rule, l2.layers, l2.fixed_by) == ("l2-with-weight-decay", ("d", "head"), None)
    # L2(0.01) (the "l2" shorthand) is weight decay 0.02 with plain SGD.
    assert l2.detail == ("optimizer SGD(weight_decay=0.0001, momentum=0); L2 coefficient(s) "
                         "0.01 on 2 layers, which with plain SGD are weight_decay 0.02")
    assert "L2(λ) is weight_decay=2λ" in l2.explanation and "AdamW" in l2.explanation
    assert decay.rule == "weight-decay-on-bias-or-norm" and decay.layers == ("d",)
    # Not without weight decay, not without an optimizer, not on a bare graph.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    assert lint(model) == []
    assert lint(dense_model()) == []
    model.compile(optimizer=keras.optimizers.AdamW(weight_decay=1e-4), loss="mse")
    assert rules_of(lint(model)) == ["l2-with-weight-decay", "weight-decay-on-bias-or-norm"]
    assert lint_graph(keras_rewrite.to_graph(model)) == []
    # No pass fixes it: the fix leaves it, and says so.
    _, report = lint(model, fix=True)
    assert report.passes == [] and rules_of(report.after) == rules_of(report.before)
    assert report.fixed == []


def test_the_explanation_s_math_l2_is_sgd_weight_decay_2_lambda():
    """One SGD step with L2(λ) equals one with weight_decay=2λ; with Adam they differ."""
    lam, lr = 0.05, 0.1
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)).astype("float32"), rng.standard_normal((8, 2))

    def stepped(regularizer, optimizer):
        inputs = keras.Input((4,))
        model = keras.Model(inputs, layers.Dense(2, use_bias=False,
                                                 kernel_initializer="ones",
                                                 kernel_regularizer=regularizer)(inputs))
        model.compile(optimizer=optimizer, loss="mse", run_eagerly=True)
        model.train_on_batch(x, y.astype("float32"))
        return model.get_weights()[0]

    sgd_l2 = stepped(keras.regularizers.L2(lam), keras.optimizers.SGD(lr))
    sgd_decay = stepped(None, keras.optimizers.SGD(lr, weight_decay=2 * lam))
    np.testing.assert_allclose(sgd_l2, sgd_decay, rtol=1e-6, atol=1e-7)
    assert not np.allclose(sgd_l2, stepped(None, keras.optimizers.SGD(lr)), atol=1e-3)
    adam_l2 = stepped(keras.regularizers.L2(lam), keras.optimizers.Adam(lr))
    adam_decay = stepped(None, keras.optimizers.Adam(lr, weight_decay=2 * lam))
    assert not np.allclose(adam_l2, adam_decay, atol=1e-3)


def test_weight_decay_on_bias_or_norm_and_its_exclusion():
    model = dense_model(bn=True)
    optimizer = keras.optimizers.AdamW(weight_decay=1e-4)
    model.compile(optimizer=optimizer, loss="mse")
    (_, decay) = lint(model)
    assert decay.rule == "weight-decay-on-bias-or-norm" and decay.layers == ("bn", "d")
    assert "decays 3 biases and γ/β variables, e.g. bn/gamma, bn/beta, d/bias" in decay.detail
    assert "exclude_from_weight_decay" in decay.explanation
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    assert rules_of(lint(model)) == ["l2-with-weight-decay"]
    # A rebuilt model's optimizer keeps the exclusion (it is not in the optimizer's config).
    fixed, report = lint(model, fix=True)
    assert rules_of(report.after) == ["l2-with-weight-decay"]
    assert fixed.optimizer is not optimizer
    # Excluding the variables themselves works too (matched by path in the rebuilt model).
    model.compile(optimizer=keras.optimizers.AdamW(weight_decay=1e-4), loss="mse")
    model.optimizer.exclude_from_weight_decay(
        var_list=[model.get_layer("d").bias, *model.get_layer("bn").trainable_weights])
    assert rules_of(lint(model)) == ["l2-with-weight-decay"]
    assert rules_of(lint(model, fix=True)[1].after) == ["l2-with-weight-decay"]


def test_regularizer_on_bias_or_norm():
    model = dense_model(bias_regularizer="l2")
    (finding,) = lint(model)
    assert (finding.rule, finding.layers, finding.fixed_by) == (
        "regularizer-on-bias-or-norm", ("d",), None)
    assert "d: bias_regularizer" in finding.detail
    inputs = keras.Input((4,))
    x = layers.BatchNormalization(gamma_regularizer="l2", name="bn")(inputs)
    x = layers.Dense(2, kernel_regularizer="l2", use_bias=False, name="head")(x)
    assert found(keras.Model(inputs, x)) == [("regularizer-on-bias-or-norm", ("bn",), None)]
    # Set in place on the variable (it works there, in the loss) counts too.
    model = dense_model()
    model.get_layer("d").bias.regularizer = L2
    assert found(model) == [("regularizer-on-bias-or-norm", ("d",), None),
                            ("regularizer-not-saved", ("d",), None)]  # and a file loses it
    # The l2 pass leaves biases alone by default; with include_biases=True lint disagrees.
    assert lint(keras_rewrite.rewrite(dense_model(), ["l2"])) == []
    biased = keras_rewrite.rewrite(dense_model(kernel_regularizer=None),
                                   [keras_rewrite.passes.L2Regularization(include_biases=True)])
    assert rules_of(lint(biased)) == ["regularizer-on-bias-or-norm"]


def test_regularizer_set_on_a_built_layer_has_no_effect_until_a_rebuild():
    model = dense_model(kernel_regularizer=None)
    model.get_layer("d").kernel_regularizer = keras.regularizers.L2(0.1)
    # The fact the rule is about: the config shows it, the loss does not.
    assert model.get_layer("d").get_config()["kernel_regularizer"] is not None
    assert len(model.losses) == 1  # only the head's
    (finding,) = lint(model)
    assert (finding.rule, finding.layers, finding.fixed_by) == (
        "regularizer-without-effect", ("d",), None)
    assert finding.detail == "in the config but not on the variable: d.kernel_regularizer"
    fixed, report = lint(model, fix=True)
    assert report.passes == [] and report.after == [] and report.fixed == [finding]
    assert len(fixed.losses) == 2  # the rebuild created the variable with its regularizer


# ------------------------------------------------------------------------------ bias before BN


def test_bias_before_bn_fires_where_the_bias_is_wasted():
    model = model_of(conv(use_bias=True, kernel_regularizer="l2"),
                     named(layers.BatchNormalization, "bn"), named(layers.ReLU, "relu"),
                     regularized=False)
    (finding,) = lint(model)
    assert (finding.rule, finding.layers, finding.fixed_by) == (
        "bias-before-bn", ("conv", "bn"), "drop_bias_before_bn")
    assert "cancels out" in finding.explanation
    # Not when the bias matters: a fused activation, BN over another axis, another user.
    assert lint(model_of(conv(use_bias=True, activation="relu"),
                         named(layers.BatchNormalization, "bn"))) != []  # activation-before-bn
    assert "bias-before-bn" not in rules_of(lint(model_of(
        conv(use_bias=True, activation="relu"), named(layers.BatchNormalization, "bn"))))
    assert lint(model_of(conv(use_bias=True), named(layers.BatchNormalization, "bn", axis=1))) \
        == []
    inputs = keras.Input((8, 8, 3))
    c = layers.Conv2D(4, 3, kernel_regularizer="l2", name="conv")(inputs)
    fan_out = keras.Model(inputs, layers.Add()([c, layers.BatchNormalization()(c)]))
    assert lint(fan_out) == []
    # Fixed: no finding, and the same predictions up to float32 rounding.
    for v in model.get_layer("conv").weights + model.get_layer("bn").non_trainable_weights:
        v.assign(np.random.default_rng(0).normal(size=v.shape).astype("float32") ** 2)
    fixed, report = lint(model, fix=True)
    assert report.passes == ["drop_bias_before_bn"] and report.after == []
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(predictions(fixed, x), predictions(model, x), rtol=1e-5,
                               atol=1e-5)


# ------------------------------------------------------------------------------ profile inference


def export_model():
    inputs = keras.Input((8, 8, 3), name="x")
    x = layers.Conv2D(4, 3, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Dropout(0.3, name="drop")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.GaussianNoise(0.1, name="noise")(x)
    model = keras.Model(inputs, layers.Dense(2, name="head")(x))
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(size=4).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2, 4).astype("float32"))
    return model


def test_profile_inference_fold_and_strip():
    model = export_model()
    assert found(model, profile="inference") == [
        ("foldable-batchnorm", ("conv", "bn"), "fold_batchnorm"),
        ("training-only-layer", ("drop",), "strip_inference"),
        ("training-only-layer", ("noise",), "strip_inference")]
    assert lint(model, profile="inference")[1].detail == "Dropout"
    # The training rules are not asked for an export, and the inference ones not in training.
    assert "foldable-batchnorm" not in rules_of(lint(model))
    fixed, report = lint(model, profile="inference", fix=True)
    assert report.passes == ["strip_inference", "fold_batchnorm"] and report.after == []
    assert [type(l).__name__ for l in fixed.layers] == ["InputLayer", "Conv2D", "ReLU",
                                                        "Flatten", "Dense"]
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(predictions(fixed, x), predictions(model, x), rtol=1e-5,
                               atol=1e-5)


def test_strip_brings_out_a_fold():
    """Conv -> Dropout -> BN: stripping the dropout makes the BN foldable; the plan sees it."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, name="conv")(inputs)
    x = layers.Dropout(0.5, name="drop")(x)
    model = keras.Model(inputs, layers.BatchNormalization(name="bn")(x))
    assert rules_of(lint(model, profile="inference")) == ["training-only-layer"]
    assert fix_plan(model, profile="inference") == ["strip_inference", "fold_batchnorm"]
    fixed, report = lint(model, profile="inference", fix=True)
    assert [type(l).__name__ for l in fixed.layers] == ["InputLayer", "Conv2D"]


# ------------------------------------------------------------------------------ the seeds


SEED_CNN_FINDINGS = [
    ("no-weight-regularization",
     ("conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "dense", "dense_1"), "l2"),
    ("bias-before-bn", ("conv2d", "batch_normalization"), "drop_bias_before_bn"),
    ("bias-before-bn", ("conv2d_1", "batch_normalization_1"), "drop_bias_before_bn"),
    ("dropout-on-feature-maps", ("dropout",), "spatial_dropout"),
    ("bias-before-bn", ("conv2d_2", "batch_normalization_2"), "drop_bias_before_bn"),
    ("bn-soon-after-dropout", ("dropout", "batch_normalization_2"), None),
    ("bias-before-bn", ("conv2d_3", "batch_normalization_3"), "drop_bias_before_bn"),
    ("dropout-on-feature-maps", ("dropout_1",), "spatial_dropout"),
    ("bias-before-bn", ("dense", "batch_normalization_4"), "drop_bias_before_bn"),
    ("bn-soon-after-dropout", ("dropout_1", "batch_normalization_4"), None),
]


def fresh_names():
    keras.backend.clear_session()  # so the seed CNN's layers get the default names


def test_seed_cnn_findings():
    fresh_names()
    assert found(build_cnn(compile=False)) == SEED_CNN_FINDINGS
    fresh_names()
    assert found(build_cnn()) == SEED_CNN_FINDINGS  # compiled with Adam: no weight decay


def test_seed_unet_only_lacks_regularization():
    (finding,) = lint(build_unet((32, 32, 3), compile=False))
    assert finding.rule == "no-weight-regularization" and len(finding.layers) == 23


def test_seed_cnn_fixed_keeps_only_design_findings():
    fresh_names()
    model = build_cnn()
    fixed, report = lint(model, fix=True)
    assert isinstance(report, LintReport) and report.before == lint(model)
    assert report.passes == ["l2", "spatial_dropout", "drop_bias_before_bn"]
    assert found(report.after) == [r for r in SEED_CNN_FINDINGS if r[2] is None]
    assert found(fixed) == found(report.after)
    assert len(report.fixed) == 8 and report.summary() == (
        "10 findings, 8 fixed by the passes l2, spatial_dropout, drop_bias_before_bn; 2 remain")
    assert report.rewrite.outputs_unchanged is None  # drop_bias_before_bn: up to rounding
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(predictions(fixed, x), predictions(model, x), rtol=1e-4,
                               atol=1e-6)
    assert fixed.optimizer is not None and fixed.optimizer is not model.optimizer


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


@pytest.mark.parametrize("build", [proposed_order_model, lambda: build_cnn(compile=False),
                                   export_model], ids=["proposed_order", "seed_cnn", "export"])
@pytest.mark.parametrize("profile", ["training", "inference"])
def test_each_fixing_pass_removes_its_findings(build, profile):
    model = build()
    before = found(model, profile=profile)
    fixers = sorted({r[2] for r in before if r[2] is not None})
    for name in fixers:
        after = found(keras_rewrite.rewrite(model, [name]), profile=profile)
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
    assert "bias-before-bn" not in rules_of(lint(model))  # dropout between conv and BN
    # The reorder puts each BN right after its conv (and splits the head's fused ReLU off):
    # their biases are then wasted, and the plan,
    # deciding on the graph as the passes before left it, drops them too.
    fixed, report = lint(model, fix=True)
    assert report.passes == ["l2", "spatial_dropout", "reorder", "drop_bias_before_bn"]
    assert [f for f in report.after if f.fixed_by is not None] == []
    fixable = [r for r in found(keras_rewrite.rewrite(model, ["l2", "spatial_dropout",
                                                           "reorder"])) if r[2] is not None]
    assert fixable == [("bias-before-bn", pair, "drop_bias_before_bn")
                       for pair in [("conv0", "bn0"), ("conv1", "bn1"), ("dense", "bn_head")]]


# ------------------------------------------------------------------------------ command line


needs_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                              reason="the command line reads and writes files on TensorFlow")


def cli(argv, capsys, cwd, monkeypatch):
    from keras_rewrite.cli import entry

    monkeypatch.chdir(cwd)
    code = entry.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def model_file(tmp_path):
    model = model_of(conv(use_bias=True), named(layers.BatchNormalization, "bn"),
                     named(layers.ReLU, "relu"), named(layers.Dropout, "drop", 0.2),
                     named(layers.Flatten, "flat"), named(layers.Dense, "head", 2),
                     regularized=False)
    model.compile(optimizer=keras.optimizers.SGD(weight_decay=1e-4), loss="mse")
    model.save(tmp_path / "m.keras")
    return tmp_path / "m.keras"


@needs_tf
def test_cli_lint_names_the_pass_and_how_to_run_it(model_file, capsys, monkeypatch):
    code, out, err = cli(["lint", "m.keras", "--brief"], capsys, model_file.parent, monkeypatch)
    assert (code, err) == (1, "")
    words = " ".join(out.split())  # the hints are wrapped for the terminal
    assert ("[bias-before-bn] conv, bn fixed by: the drop_bias_before_bn pass: keras-rewrite "
            "lint --fix m.keras -o OUT.keras (that pass alone: keras-rewrite convert m.keras -o "
            "OUT.keras --pass drop_bias_before_bn)") in words
    assert "[weight-decay-on-bias-or-norm] conv, bn, head\n  fixed by: no pass fixes it" in out
    assert "this model: optimizer SGD(weight_decay=0.0001, momentum=0)" in out
    code, out, _ = cli(["lint", "m.keras", "--profile", "inference"], capsys, model_file.parent,
                       monkeypatch)
    assert "keras-rewrite lint --fix --profile inference m.keras -o OUT.keras" in \
        " ".join(out.split())


@needs_tf
def test_cli_diff_shows_the_fix_and_writes_nothing(model_file, capsys, monkeypatch):
    code, out, err = cli(["lint", "m.keras", "--diff"], capsys, model_file.parent, monkeypatch)
    assert (code, err) == (1, "")  # as plain lint: there are findings
    assert "fix (--diff: nothing written): passes spatial_dropout, drop_bias_before_bn" in out
    assert "      drop: Dropout -> SpatialDropout2D" in out
    assert "    conv (Conv2D): dropped: bias\n    bn (BatchNormalization): computed: " \
           "moving_mean" in out
    assert "after the fix: 1 finding left\n  [weight-decay-on-bias-or-norm] bn, head" in out
    assert sorted(p.name for p in model_file.parent.iterdir()) == ["m.keras"]


@needs_tf
def test_cli_fix_writes_the_fixed_model(model_file, capsys, monkeypatch):
    folder = model_file.parent
    code, out, err = cli(["lint", "m.keras", "--fix", "-o", "fixed.keras", "--brief"], capsys,
                         folder, monkeypatch)
    assert (code, err) == (1, "")  # the weight decay on biases remains: no pass fixes it
    assert "wrote fixed.keras (reloaded and checked" in out
    fixed = keras.saving.load_model(folder / "fixed.keras")
    assert fixed.get_layer("conv").get_config()["use_bias"] is False
    assert type(fixed.get_layer("drop")).__name__ == "SpatialDropout2D"
    # Inference profile: fold and strip, nothing left: exit 0.
    code, out, err = cli(["lint", "fixed.keras", "--profile", "inference", "--fix", "-o",
                          "export.keras", "--format", "json"], capsys, folder, monkeypatch)
    assert (code, err) == (0, "")
    import json

    record = json.loads(out)
    assert record["fix"]["passes"] == ["strip_inference", "fold_batchnorm"]
    assert record["fix"]["findings_after"] == [] and record["fix"]["written"] is True
    assert [f["rule"] for f in record["findings"]] == ["foldable-batchnorm",
                                                       "training-only-layer"]
    export = keras.saving.load_model(folder / "export.keras")
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    original = keras.saving.load_model(model_file)
    np.testing.assert_allclose(predictions(export, x), predictions(original, x), rtol=1e-5,
                               atol=1e-5)


@needs_tf
@pytest.mark.parametrize("argv, fragment", [
    (["--fix"], "--fix needs -o OUT.keras"),
    (["--diff", "-o", "o.keras"], "--diff writes nothing"),
    (["-o", "o.keras"], "expected --fix with them"),
    (["--fix", "--in-place", "-o", "o.keras"], "--in-place and -o/--output exclude"),
    (["--profile", "export"], "invalid choice: 'export'"),
    (["--ignore", "bias-before-bn,no-such-rule"], "--ignore: unknown rule(s) ['no-such-rule']"),
])
def test_cli_usage_errors(argv, fragment, tmp_path, capsys, monkeypatch):
    code, out, err = cli(["lint", "m.keras", *argv], capsys, tmp_path, monkeypatch)
    assert code == 2 and fragment in err and out == ""


@needs_tf
def test_cli_fix_never_overwrites_unless_asked(model_file, capsys, monkeypatch):
    folder = model_file.parent
    before = model_file.read_bytes()
    code, _, err = cli(["lint", "m.keras", "--fix", "-o", "m.keras", "--force"], capsys,
                       folder, monkeypatch)
    assert code == 5 and "refusing to overwrite the input" in err
    assert model_file.read_bytes() == before
    code, out, err = cli(["lint", "m.keras", "--fix", "--in-place", "--brief"], capsys, folder,
                         monkeypatch)
    assert code == 1 and "wrote m.keras" in out
    assert keras.saving.load_model(model_file).get_layer("conv").get_config()["use_bias"] is False
    assert sorted(p.name for p in folder.iterdir()) == ["m.keras"]


# ------------------------------------------------------------------------------ real models


@pytest.mark.slow
def test_resnet50_with_sgd_weight_decay_and_l2():
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    model = keras_rewrite.rewrite(model, ["l2"])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-4),
                  loss="categorical_crossentropy")
    findings = {f.rule: f for f in lint(model)}
    l2 = findings["l2-with-weight-decay"]
    assert len(l2.layers) == 54  # 53 convolutions and the classifier
    assert l2.detail == ("optimizer SGD(weight_decay=0.0001, momentum=0.9); L2 coefficient(s) "
                         "0.0001 on 54 layers, which with plain SGD are weight_decay 0.0002")
    assert len(findings["weight-decay-on-bias-or-norm"].layers) == 54 + 53  # biases, BN γ/β
    fixed, report = lint(model, fix=True)
    assert report.passes == ["drop_bias_before_bn"]
    assert len(report.fixed) == 53 and {f.rule for f in report.fixed} == {"bias-before-bn"}
    assert all(f.fixed_by is None for f in report.after)


@pytest.mark.slow
def test_mobilenet_v2_for_inference():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=10,
                                           classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(size=n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
    inputs = keras.Input((64, 64, 3))
    model = keras.Model(inputs, layers.Dropout(0.2, name="top_dropout")(model(inputs)))
    findings = lint(model, profile="inference")
    assert rules_of(findings).count("foldable-batchnorm") == 52
    assert found([f for f in findings if f.rule == "training-only-layer"]) == [
        ("training-only-layer", ("top_dropout",), "strip_inference")]
    fixed, report = lint(model, profile="inference", fix=True)
    assert report.passes == ["strip_inference", "fold_batchnorm"] and report.after == []
    assert not any(isinstance(l, layers.BatchNormalization) for l in fixed.layers)
    x = rng.standard_normal((2, 64, 64, 3)).astype("float32")
    want = predictions(model, x)
    np.testing.assert_allclose(predictions(fixed, x), want, rtol=1e-4,
                               atol=1e-4 * float(np.abs(want).max()))


@needs_tf
def test_ignored_rules_are_neither_reported_nor_fixed(model_file, capsys, monkeypatch):
    code, out, err = cli(["lint", "m.keras", "--diff", "--ignore", "bias-before-bn",
                          "--ignore", "weight-decay-on-bias-or-norm"], capsys, model_file.parent,
                         monkeypatch)
    assert (code, err) == (1, "")  # dropout-on-feature-maps is still there
    assert "fix (--diff: nothing written): passes spatial_dropout\n" in out
    assert "bias-before-bn" not in out and "weight-decay-on-bias-or-norm" not in out
    model = keras.saving.load_model(model_file)
    rules = {f.rule for f in lint(model)}
    kept = {f.rule for f in lint(model, ignore=["bias-before-bn"])}
    assert "bias-before-bn" in rules and kept == rules - {"bias-before-bn"}
    fixed, report = lint(model, fix=True, ignore="bias-before-bn")
    assert "drop_bias_before_bn" not in report.passes
    assert fixed.get_layer("conv").get_config()["use_bias"] is True
    with pytest.raises(keras_rewrite.RewriteError, match=r"unknown rule\(s\) \['nope'\]"):
        lint(model, ignore=["nope"])


def test_a_regularizer_only_on_the_variable_is_reported_because_saving_loses_it(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Dense(3, name="d")(inputs))
    model.get_layer("d").kernel.regularizer = keras.regularizers.L2(0.1)
    assert len(model.losses) == 1  # it counts now...
    (finding,) = [f for f in lint(model) if f.rule == "regularizer-not-saved"]
    assert finding.layers == ("d",) and "d/kernel" in finding.detail
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").losses == []  # ...and a file loses it
    model.get_layer("d").kernel_regularizer = keras.regularizers.L2(0.1)  # both: kept
    assert "regularizer-not-saved" not in [f.rule for f in lint(model)]

