"""examples/cnn_spatial_dropout.py: lint, rewrite with the seed passes, lint again."""
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

import cnn_spatial_dropout
from helpers import predict, random_inputs

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cnn_spatial_dropout.py"


@pytest.fixture(scope="module")
def ran():
    return cnn_spatial_dropout.main()


def rules(findings, fixable=None):
    return [f.rule for f in findings if fixable is None or (f.fixed_by is not None) == fixable]


def test_seed_cnn_gets_l2_and_spatial_dropout(ran):
    run = ran["seed_cnn"]
    model, new = run["model"], run["new_model"]
    dropouts = [l.name for l in model.layers if type(l) is layers.Dropout]
    assert len(dropouts) == 3
    # The two on feature maps become SpatialDropout2D; the one after Dense(512) stays.
    assert [type(new.get_layer(n)).__name__ for n in dropouts] == [
        "SpatialDropout2D", "SpatialDropout2D", "Dropout"]
    kernels = [l for l in new.layers if isinstance(l, (layers.Conv2D, layers.Dense))]
    assert len(kernels) == 6
    assert all(l.get_config()["kernel_regularizer"] is not None for l in kernels)
    assert len(new.losses) == 6  # the L2 terms really enter the training loss
    # drop_bias_before_bn: equal up to float32 rounding (the bias moves into the BN's mean).
    assert run["report"].outputs_unchanged is None
    x = random_inputs(model)
    np.testing.assert_allclose(predict(new, x)[0], predict(model, x)[0], atol=1e-6)


def test_seed_cnn_findings_before_and_after(ran):
    run = ran["seed_cnn"]
    assert rules(run["findings_before"]) == [
        "no-weight-regularization", "bias-before-bn", "bias-before-bn",
        "dropout-on-feature-maps", "bias-before-bn", "bn-soon-after-dropout", "bias-before-bn",
        "dropout-on-feature-maps", "bias-before-bn", "bn-soon-after-dropout"]
    # Everything a pass fixes is gone; what needs a design change is still reported.
    assert rules(run["findings_after"]) == ["bn-soon-after-dropout"] * 2
    assert rules(run["findings_after"], fixable=True) == []


def test_proposed_order_is_reordered_with_weights_kept(ran):
    run = ran["proposed_cnn"]
    model, new = run["model"], run["new_model"]
    block = ["Conv2D", "BatchNormalization", "Activation", "MaxPooling2D", "SpatialDropout2D"]
    head = ["Flatten", "Dense", "BatchNormalization", "Activation", "Dropout", "Dense",
            "Activation"]
    assert [type(l).__name__ for l in new.layers] == block * 2 + head
    for old in model.layers:
        if isinstance(old, layers.BatchNormalization):
            for a, b in zip(old.weights, new.get_layer(old.name).weights):
                assert np.array_equal(np.asarray(a), np.asarray(b))
    assert {"bn-after-dropout", "dropout-before-pooling"} <= set(rules(run["findings_before"]))
    assert rules(run["findings_after"], fixable=True) == []
    # Only the dropouts moved (the identity at inference), and the biases went into the BN
    # moving means (equal up to rounding).
    assert run["report"].outputs_unchanged is None
    x = random_inputs(model)
    np.testing.assert_allclose(predict(new, x)[0], predict(model, x)[0], atol=1e-6)


def test_prints_layer_order_and_findings(ran, capsys):
    cnn_spatial_dropout.rewrite_and_explain("tiny", cnn_spatial_dropout.build_proposed_cnn(
        input_shape=(12, 12, 3)))
    out = capsys.readouterr().out
    assert "layer order:" in out and "findings before (9):" in out
    assert "findings after (2):" in out
    assert "ReorderBlocks: modified" in out and "SpatialDropout2D" in out
    words = " ".join(out.split())  # explanations are wrapped
    assert "[bn-after-dropout]" in words and '(the "variance shift")' in words


@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_runs_as_a_script():
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("=== ") == 2 and proc.stdout.count("findings after (2):") == 2
