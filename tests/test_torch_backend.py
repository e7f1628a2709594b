"""On the PyTorch backend a Keras model is also a ``torch.nn.Module``: a rewritten model must be
one whose parameters torch sees, each exactly once, and which trains on its own.

Keras picks its backend once per process, so the checks run in a process with
KERAS_BACKEND=torch (the script below); this test reads what it printed.
"""
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent

SCRIPT = r'''
import json
import keras
import numpy as np
import torch
from keras import layers

import keras_rewrite

assert keras.backend.backend() == "torch", keras.backend.backend()
keras.utils.set_random_seed(0)
inputs = keras.Input((12, 12, 3))
x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
x = layers.BatchNormalization(name="bn")(x)
x = layers.ReLU()(x)
x = layers.MaxPooling2D()(x)
x = layers.Dropout(0.2)(x)
x = layers.Conv2D(4, 3, name="conv2")(x)
x = layers.GlobalAveragePooling2D()(x)
model = keras.Model(inputs, layers.Dense(3, name="head")(x))
new = keras_rewrite.rewrite(model, ["l2"])
out = {"is_module": isinstance(new, torch.nn.Module)}

# torch's parameter tracking: every Keras variable of the rewritten model is one torch
# Parameter, listed once; none is the original's.
params = list(new.parameters())
named = dict(new.named_parameters())
variables = new.variables
out["n_parameters"] = len(params)
out["n_distinct_parameters"] = len({id(p) for p in params})
out["n_named"] = len(named)
out["n_variables"] = len(variables)
out["n_distinct_variable_values"] = len({id(v.value) for v in variables})
out["variables_are_the_parameters"] = {id(v.value) for v in variables} == {id(p) for p in params}
out["trainable_are_requires_grad"] = (
    {id(v.value) for v in new.trainable_variables} == {id(p) for p in params if p.requires_grad})
out["n_trainable"] = len(new.trainable_variables)
out["shared_with_original"] = len({id(p) for p in params} & {id(p) for p in model.parameters()})
out["kernels_regularized"] = sorted(
    l.name for l in new.layers if getattr(getattr(l, "kernel", None), "regularizer", None))
out["l2_losses"] = len(new.losses)

# Training the rewritten model moves its weights (the BatchNormalization statistics too) and
# leaves the original's alone.
def snapshot(m):
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in m.variables}

rng = np.random.default_rng(0)
data, labels = rng.random((16, 12, 12, 3)).astype("float32"), rng.integers(0, 3, 16)
before_original, before_new = snapshot(model), snapshot(new)
new.compile(optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = new.fit(data, labels, batch_size=4, epochs=1, verbose=0)
after_original, after_new = snapshot(model), snapshot(new)
out["loss"] = history.history["loss"]
out["changed_in_new"] = sorted(p for p in before_new
                               if not np.array_equal(before_new[p], after_new[p]))
out["changed_in_original"] = sorted(p for p in before_original
                                    if not np.array_equal(before_original[p], after_original[p]))
out["n_new_variables"] = len(before_new)
# Gradients reach the rewritten model's own Parameters through torch's autograd.
new.zero_grad()
loss = keras.ops.mean(keras.ops.square(new(data[:2], training=True)))
loss.backward()
out["with_grad"] = sorted(n for n, p in new.named_parameters() if p.grad is not None)
out["original_with_grad"] = sorted(n for n, p in model.named_parameters() if p.grad is not None)

# A layer holding another layer of the model (KerasHub's MaskedLMHead holds the backbone's
# token embedding): torch keeps it in the holder's `_modules`. The rewrite re-ties it there, so
# the embedding is one variable, one Parameter, and the holder's attribute is the model's one.
import sys
sys.path.insert(0, "tests/rebuild")
from test_state_contract import TiedHead  # the layer of the TensorFlow test of the same

ids = keras.Input((5,), dtype="int32")
embedding = layers.Embedding(20, 8, name="emb")
tied = keras.Model(ids, TiedHead(embedding, name="head")(embedding(ids)))
tied_new = keras_rewrite.rewrite(tied, ["l2"])
out["tied_is_one_layer"] = tied_new.get_layer("head").embedding is tied_new.get_layer("emb")
out["tied_in_modules"] = tied_new.get_layer("head")._modules.get("embedding") is \
    tied_new.get_layer("emb")
out["tied_n_variables"] = len(tied_new.weights)
out["tied_n_parameters"] = len(list(tied_new.parameters()))
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def result():
    pytest.importorskip("torch", reason="install the test extras: pip install -e '.[test]'")
    env = dict(os.environ, KERAS_BACKEND="torch")
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600, cwd=HERE.parent)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    import json
    (line,) = [l for l in run.stdout.splitlines() if l.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
def test_torch_sees_every_variable_of_the_rewritten_model_exactly_once(result):
    assert result["is_module"]
    # conv (2) + bn (4) + conv2 (2) + head (2) = 10 weights, plus the Dropout's seed state.
    assert result["n_variables"] == 11
    assert result["n_parameters"] == result["n_distinct_parameters"] == result["n_named"] == 11
    assert result["n_distinct_variable_values"] == 11
    assert result["variables_are_the_parameters"]
    assert result["n_trainable"] == 8  # kernels, biases, gamma and beta
    assert result["trainable_are_requires_grad"]
    assert result["shared_with_original"] == 0
    assert result["kernels_regularized"] == ["conv", "conv2", "head"]
    assert result["l2_losses"] == 3


@pytest.mark.slow
def test_fit_changes_the_rewritten_models_weights_and_not_the_originals(result):
    assert all(l == l and l < 1e6 for l in result["loss"]), result["loss"]  # finite
    changed = set(result["changed_in_new"])
    for layer in ("conv", "conv2", "head"):
        assert f"{layer}/kernel" in changed and f"{layer}/bias" in changed, changed
    for weight in ("gamma", "beta", "moving_mean", "moving_variance"):
        assert f"bn/{weight}" in changed, changed
    assert result["changed_in_original"] == []
    assert len(result["with_grad"]) == 8, result["with_grad"]
    assert result["original_with_grad"] == []


@pytest.mark.slow
def test_a_tied_sub_layer_is_one_parameter_in_the_rewritten_model(result):
    assert result["tied_is_one_layer"] and result["tied_in_modules"]
    assert result["tied_n_variables"] == result["tied_n_parameters"] == 1
