"""The L2 U-Net and custom-pass examples run and do what they print."""
import inspect
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

import custom_pass
import keras_rewrite
import unet_l2

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_unet_l2_penalty_is_the_formula(capsys):
    out = unet_l2.main(["--size", "32", "--samples", "8", "--epochs", "2"])
    model = out["model"]
    convs = [l for l in model.layers if isinstance(l, (layers.Conv2D, layers.Conv2DTranspose))]
    first_block = [l for l in model.layers if type(l) is layers.Conv2D][:2]
    assert len(convs) == 23
    expected = 0.0
    for layer in convs:
        c = 1e-5 if layer in first_block else 1e-4
        assert layer.get_config()["kernel_regularizer"]["config"]["l2"] == c, layer.name
        expected += c * np.sum(np.asarray(layer.kernel, dtype=np.float64) ** 2)
    assert out["penalty"] > 0
    np.testing.assert_allclose(out["penalty"], expected, rtol=1e-5)
    assert len(out["loss"]) == 2 and all(np.isfinite(out["loss"]))
    printed = capsys.readouterr().out
    assert f"L2 penalty after training: {out['penalty']:.6g}" in printed
    assert "epoch 2: loss" in printed


def test_custom_pass_is_a_rule_of_at_most_eight_lines():
    source = inspect.getsource(custom_pass.ReluToLeaky).rstrip("\n").splitlines()
    assert len(source) <= 8, "\n".join(source)
    assert issubclass(custom_pass.ReluToLeaky, keras_rewrite.passes.rules.Rule)


def test_custom_pass_turns_every_relu_into_leaky_relu_and_keeps_the_rest(capsys):
    result = custom_pass.main()
    changes = result.report.passes[0].changes
    assert len(changes) == 5 and all(c.action == "replaced" for c in changes)
    assert all(c.detail == "Activation -> LeakyReLU" for c in changes)
    original = custom_pass.build_cnn()  # the same architecture (its auto names differ)
    new = result.model
    # Structure: the same layers in the same order; only the five ReLU activations changed class.
    relu = [type(l) is layers.Activation and l.get_config()["activation"] == "relu"
            for l in original.layers]
    assert sum(relu) == 5 and any(type(l) is layers.Activation for l in new.layers)  # softmax
    assert [type(l).__name__ for l in new.layers] == [
        "LeakyReLU" if r else type(l).__name__ for l, r in zip(original.layers, relu)]
    assert [l.name for l in new.layers if isinstance(l, layers.LeakyReLU)] == [
        c.layer for c in changes]  # names kept
    assert all(l.get_config()["negative_slope"] == 0.1 for l in new.layers
               if isinstance(l, layers.LeakyReLU))
    assert result.report.weights_new == 0 and result.report.outputs_unchanged is False
    printed = capsys.readouterr().out
    assert "rule ReluToLeaky: 5 matches, 0 refused" in printed
    assert "5 LeakyReLU layers now" in printed


def test_relu_to_leaky_differs_from_relu_only_on_negative_inputs():
    inputs = keras.Input((6,))
    pre = layers.Dense(6, name="pre")(inputs)
    model = keras.Model(inputs, layers.Activation("relu", name="act")(pre))
    new = keras_rewrite.rewrite(model, [custom_pass.ReluToLeaky()])
    x = np.random.default_rng(0).standard_normal((8, 6)).astype("float32")
    z = np.asarray(model.get_layer("pre")(x))
    got, was = np.asarray(new(x)), np.asarray(model(x))
    assert (z < 0).any() and (z > 0).any()
    np.testing.assert_array_equal(got[z > 0], was[z > 0])  # positives: exactly as before
    np.testing.assert_allclose(got[z < 0], 0.1 * z[z < 0], rtol=1e-6)  # negatives: leak
    assert (was[z < 0] == 0).all()


def test_relu_to_leaky_on_relu_layers_shared_and_capped():
    inputs = keras.Input((4,))
    shared = layers.ReLU(name="shared_relu")
    x = shared(shared(inputs) - 1.0)
    capped = layers.ReLU(max_value=6.0, name="relu6")(x)
    model = keras.Model(inputs, [x, capped])
    result = keras_rewrite.rewrite_with_report(model, [custom_pass.ReluToLeaky()])
    assert [(c.layer, c.detail) for c in result.report.passes[0].changes] == [
        ("shared_relu", "ReLU -> LeakyReLU (a shared layer: all 2 calls)")]
    new = result.model
    assert type(new.get_layer("shared_relu")) is layers.LeakyReLU
    assert type(new.get_layer("relu6")) is layers.ReLU
    x = np.array([[-2.0, -0.5, 0.5, 2.0]], "float32")
    first = np.where(x > 0, x, 0.1 * x) - 1.0
    np.testing.assert_allclose(new(x)[0], np.where(first > 0, first, 0.1 * first), rtol=1e-6)


@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_custom_pass_runs_as_a_script():
    done = subprocess.run([sys.executable, str(EXAMPLES / "custom_pass.py")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Activation -> LeakyReLU") == 5


def test_readme_shows_the_examples_rule_as_it_is():
    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme[readme.index("## Write your own pass"):]
    assert inspect.getsource(custom_pass.ReluToLeaky) in section
