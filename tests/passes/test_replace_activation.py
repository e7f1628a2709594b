"""ReplaceActivation: activation layers and fused activation= arguments, checked against
models Keras builds itself from an edited config (same weights) and against NumPy math."""
import copy
import math
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite import passes as passes_module
from keras_rewrite.passes import ReplaceActivation
from helpers import all_layers, assert_identical_copy, predict

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


# ------------------------------------------------------------- the independent reference


def _form(class_name, config):
    """The activation a ReLU / LeakyReLU / ELU layer config computes, or None (written out
    here again, on purpose: the test's own reading of the Keras functions' defaults)."""
    if class_name == "ReLU" and config["negative_slope"] == 0 and config["threshold"] == 0:
        return {None: "relu", 6.0: "relu6"}.get(config["max_value"])
    if class_name == "LeakyReLU" and config["negative_slope"] == 0.2:
        return "leaky_relu"
    if class_name == "ELU" and config["alpha"] == 1.0:
        return "elu"
    return None


def _edit_layers(layer_list, old, new):
    old_fn = keras.activations.get(old)
    for entry in layer_list:
        config = entry["config"]
        if "layers" in config:  # a nested Functional model
            _edit_layers(config["layers"], old, new)
        elif entry["class_name"] in ("ReLU", "LeakyReLU", "ELU"):
            form = _form(entry["class_name"], config)
            if form is not None and keras.activations.get(form) is old_fn:
                entry["class_name"] = "Activation"
                entry["config"] = {"name": config["name"], "trainable": config["trainable"],
                                   "dtype": config["dtype"], "activation": new}
        elif isinstance(config.get("activation"), str) and \
                keras.activations.get(config["activation"]) is old_fn:
            config["activation"] = new


def built_anew(model, old, new):
    """`model` with every `old` activation made `new`, built by Keras from its edited config,
    with the original's weights: what the rewrite must equal, bit for bit."""
    config = copy.deepcopy(model.get_config())
    _edit_layers(config["layers"], old, new)
    reference = keras.Model.from_config(config)
    reference.set_weights(model.get_weights())
    return reference


def assert_equal_outputs(a, b, x):
    for u, v in zip(predict(a, x), predict(b, x)):
        np.testing.assert_array_equal(u, v)


def assert_outputs_differ(a, b, x):
    """Not rounding: the outputs differ by more than 1% of their scale."""
    for u, v in zip(predict(a, x), predict(b, x)):
        assert np.max(np.abs(u - v)) > 0.01 * np.max(np.abs(u)), np.max(np.abs(u - v))


def replaced(model, old, new):
    result = keras_rewrite.rewrite_with_report(model, [ReplaceActivation(old, new)])
    (pass_result,) = result.report.passes
    return result.model, pass_result


def np_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


# -------------------------------------------------------------------- hand-made models


def every_form():
    """Dense(relu), Conv2D(relu), Activation(relu), ReLU(), ReLU(6), LeakyReLU, ELU, a shared
    Activation(relu) called twice and a nested model with a ReLU() inside."""
    inner_in = keras.Input((4, 4, 6))
    inner_x = layers.ReLU(name="inner_relu")(layers.Conv2D(6, 1, name="inner_conv")(inner_in))
    inner = keras.Model(inner_in, inner_x, name="inner")
    shared = layers.Activation("relu", name="shared_act")
    x = inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(6, 3, activation="relu", name="conv_relu")(x)
    x = shared(layers.Conv2D(6, 1, name="conv")(x))
    x = layers.ReLU(name="relu")(x)
    x = layers.ReLU(max_value=6.0, name="relu6")(x)
    x = layers.LeakyReLU(name="leaky")(x)
    x = layers.ELU(name="elu")(x)
    x = shared(inner(x))
    x = layers.Activation("relu", name="act")(layers.Flatten()(x))
    outputs = layers.Dense(5, activation="relu", name="head")(layers.Dense(8, name="hidden")(x))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 3)).astype("float32")
    return model, x


def test_relu_to_gelu_equals_the_model_built_with_gelu_and_only_relu_changes():
    model, x = every_form()
    new, result = replaced(model, "relu", "gelu")
    assert_equal_outputs(new, built_anew(model, "relu", "gelu"), x)
    assert_outputs_differ(new, model, x)
    by_layer = {c.layer: c for c in result.changes}
    assert {name for name, c in by_layer.items() if c.action == "replaced_activation"} == {
        "conv_relu", "shared_act", "relu", "inner_relu", "act", "head"}
    assert all(c.detail.endswith("outputs change") for c in result.changes
               if c.action != "skipped")
    assert "fused in Conv2D" in by_layer["conv_relu"].detail
    assert "all 2 calls" in by_layer["shared_act"].detail
    assert by_layer["relu6"].action == "skipped"
    assert "computes 'relu6', not 'relu'" in by_layer["relu6"].detail
    assert result.modified and result.outputs_unchanged is False
    layers_by_name = {layer.name: layer for layer in all_layers(new)}
    assert type(layers_by_name["relu"]) is layers.Activation  # name kept, class changed
    assert type(layers_by_name["inner_relu"]) is layers.Activation
    for name in ("leaky", "elu", "relu6", "hidden"):  # not relu: untouched
        assert layers_by_name[name].get_config() == model.get_layer(name).get_config()
    # the shared layer is still one layer, called twice
    (entry,) = [e for e in new.get_config()["layers"] if e["name"] == "shared_act"]
    assert entry["config"]["activation"] == "gelu" and len(entry["inbound_nodes"]) == 2


def test_fused_relu_to_gelu_matches_numpy():
    inputs = keras.Input((5,))
    model = keras.Model(inputs, layers.Dense(4, activation="relu", name="d")(inputs))
    x = np.random.default_rng(1).standard_normal((6, 5)).astype("float32")
    new, _ = replaced(model, "relu", "gelu")
    kernel, bias = (np.asarray(w, "float64") for w in model.get_layer("d").weights)
    want = np_gelu(x.astype("float64") @ kernel + bias)
    np.testing.assert_allclose(predict(new, x)[0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new.get_layer("d").kernel, model.get_layer("d").kernel)


@pytest.mark.parametrize("layer,name", [
    (lambda: layers.ReLU(), "relu"), (lambda: layers.ReLU(max_value=6), "relu6"),
    (lambda: layers.LeakyReLU(negative_slope=0.2), "leaky_relu"), (lambda: layers.ELU(), "elu"),
])
def test_each_activation_layer_form_is_its_function_and_is_replaced(layer, name):
    x = np.linspace(-10, 10, 2001, dtype="float32").reshape(1, -1)
    made = layer()
    np.testing.assert_array_equal(made(x), keras.activations.get(name)(x))  # the claim
    inputs = keras.Input((x.shape[1],))
    model = keras.Model(inputs, made(inputs))
    new, result = replaced(model, name, "tanh")
    assert type(new.layers[-1]) is layers.Activation and new.layers[-1].name == made.name
    np.testing.assert_allclose(predict(new, x)[0], np.tanh(x), rtol=1e-6, atol=1e-6)
    assert [c.action for c in result.changes] == ["replaced_activation"]


def test_a_layer_form_with_other_settings_is_left_with_the_reason():
    inputs = keras.Input((3,))
    x = layers.ReLU(max_value=3.0, name="capped")(inputs)
    model = keras.Model(inputs, layers.LeakyReLU(name="leaky")(x))  # negative_slope=0.3
    for old, layer, reason in (("relu", "capped", "is not 'relu'"),
                               ("leaky_relu", "leaky", "negative_slope=0.3")):
        new, result = replaced(model, old, "gelu")
        (change,) = result.changes
        assert (change.layer, change.action) == (layer, "skipped")
        assert reason in change.detail
        assert not result.modified and result.outputs_unchanged is True
        assert_identical_copy(model, new)


@pytest.mark.parametrize("old,new", [("relu", "relu"), ("swish", "silu"), ("silu", "swish"),
                                     ("hard_swish", "hard_silu")])
def test_the_same_function_under_two_names_is_unchanged(old, new):
    inputs = keras.Input((4,))
    x = layers.Dense(4, activation="swish")(inputs)
    x = layers.Activation("hard_swish")(layers.ReLU()(layers.Activation("relu")(x)))
    model = keras.Model(inputs, layers.Dense(2)(x))
    new_model, result = replaced(model, old, new)
    assert (result.modified, result.outputs_unchanged, result.changes) == (False, True, [])
    assert_identical_copy(model, new_model)


def test_swish_names_the_same_function_as_silu():
    model, x = every_form()
    one, _ = replaced(model, "relu", "swish")
    other, _ = replaced(model, "relu", "silu")
    assert_equal_outputs(one, other, x)
    assert one.get_layer("act").get_config()["activation"] == "silu"


def test_applying_twice_equals_once_and_the_second_run_is_unchanged():
    model, x = every_form()
    once, _ = replaced(model, "relu", "gelu")
    twice, result = replaced(once, "relu", "gelu")
    assert not result.modified and result.outputs_unchanged is True
    assert [c.action for c in result.changes] == ["skipped"]  # the relu6 layer, again
    assert_equal_outputs(once, twice, x)


def test_the_rewritten_model_saves_and_loads(tmp_path):
    model, x = every_form()
    new, _ = replaced(model, "relu", "gelu")
    new.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert_equal_outputs(new, loaded, x)
    assert loaded.get_layer("head").get_config()["activation"] == "gelu"


def test_old_and_new_are_checked_and_serialize():
    with pytest.raises(keras_rewrite.PassError, match=r"Received: old='rellu'; did you mean "
                                                      r"'relu'"):
        ReplaceActivation("rellu", "gelu")
    with pytest.raises(keras_rewrite.PassError, match=r"Received: new=3 of type int"):
        ReplaceActivation("relu", 3)
    with pytest.raises(keras_rewrite.PassError, match="does not know by a name"):
        ReplaceActivation("relu", lambda t: t)
    with pytest.raises(keras_rewrite.PassError, match="Received: old=<class"):
        ReplaceActivation(layers.ReLU, "gelu")  # a layer class is not an activation name
    p = ReplaceActivation(keras.activations.relu, "swish")
    assert p.get_config() == {"old": "relu", "new": "swish"}
    specs = passes_module.serialize_passes([p])
    (again,) = passes_module.deserialize_passes(specs)
    assert again.get_config() == p.get_config() and again.new == "silu"
    assert "does not know" not in repr(p) and repr(p) == "ReplaceActivation(old='relu', new='swish')"


def test_dry_run_lists_matches_and_refusals_without_changing_anything():
    model, _ = every_form()
    dry = ReplaceActivation("relu", "gelu").dry_run(model)
    assert [m.names[0] for m in dry.matches] == ["conv_relu", "shared_act", "relu",
                                                 "inner_relu", "act", "head"]
    assert [m.names[0] for m in dry.refusals] == ["relu6"]


# ------------------------------------------------------------------------- real models


def _count_changes(result, action="replaced_activation"):
    return sum(c.action == action for c in result.changes)


def trained_like(model, seed=0):
    """BatchNormalization statistics as training leaves them: with Keras's initial ones an
    untrained MobileNetV2 maps every input to ~1e-10, where no activation makes a difference."""
    rng = np.random.default_rng(seed)
    for layer in all_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            values = {"gamma": rng.uniform(0.5, 2, n), "beta": rng.normal(size=n),
                      "moving_mean": rng.normal(scale=0.1, size=n),
                      "moving_variance": rng.uniform(0.01, 0.1, n)}
            for v in layer.weights:
                v.assign(values[v.name].astype("float32"))
    return model


def features(build):
    """An applications model without its softmax head, on a batch of 2 random 64x64 images."""
    model = trained_like(build(weights=None, include_top=False, pooling="avg",
                               input_shape=(64, 64, 3)))
    return model, np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype("float32")


@pytest.mark.slow  # real applications models: seconds each
def test_mobilenetv2_relu6_layers_become_gelu():
    model, x = features(lambda **kw: keras.applications.MobileNetV2(alpha=0.35, **kw))
    relu6 = [l.name for l in model.layers if type(l) is layers.ReLU]
    assert len(relu6) == 35
    new, result = replaced(model, "relu6", "gelu")
    assert _count_changes(result) == 35 and not result.skipped
    assert_equal_outputs(new, built_anew(model, "relu6", "gelu"), x)
    assert_outputs_differ(new, model, x)
    assert {type(new.get_layer(n)) for n in relu6} == {layers.Activation}
    # relu is not relu6: every ReLU(max_value=6) is left, each with the reason
    same, relu_result = replaced(model, "relu", "gelu")
    assert not relu_result.modified and len(relu_result.skipped) == 35
    assert all("computes 'relu6'" in c.detail for c in relu_result.skipped)


@pytest.mark.slow  # real applications models: seconds each
def test_resnet50_relu_activation_layers_become_gelu_and_save(tmp_path):
    model, x = features(keras.applications.ResNet50)
    acts = [l.name for l in model.layers if type(l) is layers.Activation
            and l.get_config()["activation"] == "relu"]
    new, result = replaced(model, "relu", "gelu")
    assert _count_changes(result) == len(acts) == 49
    assert_equal_outputs(new, built_anew(model, "relu", "gelu"), x)
    assert_outputs_differ(new, model, x)
    new.save(tmp_path / "r.keras")
    assert_equal_outputs(new, keras.saving.load_model(tmp_path / "r.keras"), x)


@pytest.mark.slow  # real applications models: seconds each
def test_efficientnetb0_swish_layers_and_fused_swish_become_relu():
    model, x = features(keras.applications.EfficientNetB0)
    new, result = replaced(model, "swish", "relu")  # swish is silu: configs say "silu"
    details = [c.detail for c in result.changes]
    assert any("fused in Conv2D" in d for d in details)  # the squeeze-excite reduce convs
    assert any("(Activation layer" in d for d in details)
    assert all(d.startswith("silu -> relu") for d in details)
    assert_equal_outputs(new, built_anew(model, "silu", "relu"), x)
    assert_outputs_differ(new, model, x)
    kept = [l for l in all_layers(new) if l.get_config().get("activation") == "sigmoid"]
    assert len(kept) == 16  # the squeeze-excite expand convs' sigmoid is not swish


@pytest.mark.slow  # imports KerasHub
def test_a_kerashub_block_s_activation_argument_is_replaced():
    keras_hub = pytest.importorskip("keras_hub")

    def encoder(activation):
        inputs = keras.Input((5, 8))
        block = keras_hub.layers.TransformerEncoder(intermediate_dim=16, num_heads=2,
                                                    activation=activation, name="enc")
        return keras.Model(inputs, block(inputs))

    model = encoder("relu")
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype("float32")
    new, result = replaced(model, "relu", "gelu")
    assert [c.detail for c in result.changes] == [
        "relu -> gelu (fused in TransformerEncoder): outputs change"]
    reference = encoder("gelu")
    reference.set_weights(model.get_weights())
    assert_equal_outputs(new, reference, x)
    assert_outputs_differ(new, model, x)


@pytest.mark.slow  # a subprocess: TensorFlow's start-up
def test_the_command_line_runs_it_with_its_options(tmp_path):
    model, x = every_form()
    model.save(tmp_path / "m.keras")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "keras_rewrite_cli", "convert", "m.keras",
                           "-o", "out.keras", "--pass", "replace_activation:old=relu,new=gelu"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ReplaceActivation" in done.stdout
    out = keras.saving.load_model(tmp_path / "out.keras")
    assert_equal_outputs(out, built_anew(model, "relu", "gelu"), x)
    missing = subprocess.run([sys.executable, "-m", "keras_rewrite_cli", "convert", "m.keras",
                              "--dry-run", "--pass", "replace_activation:old=relu"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "'new'" in missing.stderr
