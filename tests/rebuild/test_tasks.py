"""KerasHub tasks stay tasks after a pass (issue 17): the class, the preprocessor, generate(),
predict and fit on raw strings or images, save and load, and a refusal where generate()'s
cached path no longer follows the graph.

The tasks come from tests/hub_tasks.py: built from constructor arguments with tokenizers made
there (nothing downloaded). Every expectation is computed from the original task or from an
independent numpy sum, never written down.
"""
from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_rewrite
from keras_rewrite.errors import RewriteError

import hub_tasks

pytestmark = pytest.mark.slow

PASS_SETS = {"l2": ["l2"], "l2+spatial_dropout": ["l2", "spatial_dropout"],
             "mixed_bfloat16": [keras_rewrite.passes.SetDtypePolicy("mixed_bfloat16")]}
CAUSAL = ("GPT2CausalLM", "GemmaCausalLM")
PROMPTS = ["the quick", "a fox"]


@functools.lru_cache(maxsize=None)
def task_and_raw(name):
    # No keras.utils.set_random_seed in this module: it clears TensorFlow's kernel cache,
    # which deletes the SentencePiece resource a built GemmaTokenizer uses (its next call
    # fails with "Resource ..._SentencepieceOp... does not exist"), whoever holds the task.
    return hub_tasks.TASKS[name]()


@functools.lru_cache(maxsize=None)
def rewritten(name, passes):
    task, _ = task_and_raw(name)
    return keras_rewrite.rewrite(task, PASS_SETS[passes])


def _labels(name, raw):
    return None if name in CAUSAL else hub_tasks.LABELS[:len(raw)]


def _predict(model, raw):
    return keras.tree.map_structure(np.asarray, model.predict(raw, batch_size=3, verbose=0))


_REGULARIZED = (("kernel_regularizer", "kernel"), ("embeddings_regularizer", "embeddings"),
                ("depthwise_regularizer", "depthwise_kernel"),
                ("pointwise_regularizer", "pointwise_kernel"),
                ("recurrent_regularizer", "recurrent_kernel"))


def _l2_penalty(model) -> float:
    """sum(factor * sum(w**2)) over every weight with an L2 regularizer, in numpy (float64)."""
    total = 0.0
    for layer in model._flatten_layers(include_self=False):
        for regularizer_attr, weight_attr in _REGULARIZED:
            regularizer = getattr(layer, regularizer_attr, None)
            if isinstance(regularizer, keras.regularizers.L2):
                weight = keras.ops.convert_to_numpy(getattr(layer, weight_attr))
                total += float(regularizer.l2) * float(np.sum(np.square(
                    weight.astype("float64"))))
    return total


@pytest.mark.parametrize("passes", list(PASS_SETS))
@pytest.mark.parametrize("name", list(hub_tasks.TASKS))
def test_the_rewritten_task_is_its_class_with_its_preprocessor(name, passes):
    task, _ = task_and_raw(name)
    new = rewritten(name, passes)
    assert isinstance(new, type(task)) and type(new).__name__ == type(task).__name__
    assert isinstance(new.backbone, type(task.backbone))
    assert new.backbone is not task.backbone and new.backbone in new.layers
    assert new.preprocessor is task.preprocessor
    if name in CAUSAL:  # the cached path reaches the new layers by attribute
        assert new.backbone.token_embedding is new.backbone.get_layer("token_embedding")
        assert all(a is b for a, b in zip(new.backbone.transformer_layers, [
            new.backbone.get_layer(layer.name) for layer in task.backbone.transformer_layers]))


@pytest.mark.parametrize("passes", ["l2", "l2+spatial_dropout"])
@pytest.mark.parametrize("name", list(hub_tasks.TASKS))
def test_predictions_on_raw_inputs_are_bit_identical(name, passes):
    task, raw = task_and_raw(name)
    new = rewritten(name, passes)
    np.testing.assert_array_equal(_predict(new, raw), _predict(task, raw))
    if name in CAUSAL:
        assert new.generate(PROMPTS, max_length=8) == task.generate(PROMPTS, max_length=8)


@pytest.mark.parametrize("name", list(hub_tasks.TASKS))
def test_a_dtype_policy_computes_as_keras_would_build_it(name):
    """The reference is the same task built by Keras under the global policy mixed_bfloat16,
    given the same weights and the same preprocessor: predictions and greedy text must be the
    very same."""
    task, raw = task_and_raw(name)
    new = rewritten(name, "mixed_bfloat16")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        reference, _ = hub_tasks.TASKS[name]()
    finally:
        keras.config.set_dtype_policy(previous)
    reference.preprocessor = task.preprocessor
    reference.set_weights(task.get_weights())
    assert {layer.dtype_policy.name for layer in new.backbone.layers
            if not isinstance(layer, keras.layers.InputLayer)} == {"mixed_bfloat16"}
    assert new.dtype_policy.name == new.backbone.dtype_policy.name == "mixed_bfloat16"
    if name == "GemmaCausalLM":
        # GemmaBackbone multiplies the embeddings by a constant it casts, while it is built,
        # to the embeddings' dtype then: float32 in the original, so the rewritten graph does
        # that one multiply in float32. Within bfloat16 rounding, not bit for bit.
        np.testing.assert_allclose(_predict(new, raw), _predict(reference, raw),
                                   rtol=3e-2, atol=3e-2)
        return
    np.testing.assert_array_equal(_predict(new, raw), _predict(reference, raw))
    if name in CAUSAL:
        assert new.generate(PROMPTS, max_length=8) == reference.generate(PROMPTS, max_length=8)


@pytest.mark.parametrize("name", list(hub_tasks.TASKS))
def test_fit_on_raw_inputs_adds_the_l2_penalty_to_the_loss(name):
    task, raw = task_and_raw(name)
    # factor 0.1: a penalty well above the float32 rounding of a loss near log(vocabulary)
    new = keras_rewrite.rewrite(task, [keras_rewrite.passes.L2Regularization(factor=0.1)])
    labels = _labels(name, raw)
    penalty = _l2_penalty(new)
    assert penalty > 0 and len(new.losses) > 0 and len(task.losses) == 0
    loss_new = new.evaluate(raw, labels, batch_size=len(raw), verbose=0, return_dict=True)
    loss_old = task.evaluate(raw, labels, batch_size=len(raw), verbose=0, return_dict=True)
    np.testing.assert_allclose(loss_new["loss"] - loss_old["loss"], penalty, rtol=1e-4)
    before_new, before_old = new.get_weights(), task.get_weights()
    history = new.fit(raw, labels, batch_size=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before_new, new.get_weights()))
    assert all(np.array_equal(a, b) for a, b in zip(before_old, task.get_weights()))


@pytest.mark.parametrize("passes", ["l2", "l2+spatial_dropout"])
@pytest.mark.parametrize("name", list(hub_tasks.TASKS))
def test_a_saved_task_reloads_as_its_class_with_the_rewrite(name, passes, tmp_path):
    task, raw = task_and_raw(name)
    new = rewritten(name, passes)
    path = tmp_path / "task.keras"
    new.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, type(task)) and isinstance(loaded.backbone, type(task.backbone))
    assert len(loaded.losses) == len(new.losses) > 0
    assert [type(layer).__name__ for layer in loaded.backbone.layers] == \
        [type(layer).__name__ for layer in new.backbone.layers]
    assert loaded.preprocessor is not None and loaded.preprocessor is not task.preprocessor
    assert loaded.preprocessor.tokenizer.get_vocabulary() == \
        task.preprocessor.tokenizer.get_vocabulary() if name != "ResNetImageClassifier" else True
    np.testing.assert_array_equal(_predict(loaded, raw), _predict(new, raw))
    if name in CAUSAL:
        assert loaded.generate(PROMPTS, max_length=8) == new.generate(PROMPTS, max_length=8)


def test_a_saved_backbone_of_a_rewritten_task_reloads_with_the_rewrite(tmp_path):
    task, _ = task_and_raw("BertTextClassifier")
    new = rewritten("BertTextClassifier", "l2")
    new.backbone.save(tmp_path / "backbone.keras")
    loaded = keras.saving.load_model(tmp_path / "backbone.keras")
    assert isinstance(loaded, type(task.backbone))
    assert len(loaded.losses) == len(new.backbone.losses) > 0
    x = {"token_ids": np.array([[2, 5, 6, 3, 0, 0, 0, 0]]),
         "segment_ids": np.zeros((1, 8), "int32"),
         "padding_mask": np.array([[1, 1, 1, 1, 0, 0, 0, 0]])}
    np.testing.assert_array_equal(keras.tree.map_structure(np.asarray, loaded(x)["pooled_output"]),
                                  keras.tree.map_structure(np.asarray, new.backbone(x)["pooled_output"]))


@pytest.mark.parametrize("name", CAUSAL)
def test_a_pass_that_rewires_the_backbone_refuses_generate_with_the_reason(name):
    task, raw = task_and_raw(name)
    rewires = keras_rewrite.surgery.insert_layer(
        task, "token_embedding", keras.layers.Identity(name="probe"))
    assert isinstance(rewires, type(task))
    with pytest.raises(RewriteError, match=r"generate\(\) is refused: .*(added|removed|rewired)"):
        rewires.generate(PROMPTS, max_length=8)
    # The graph itself is right: predict() follows it.
    np.testing.assert_array_equal(_predict(rewires, raw), _predict(task, raw))


def test_a_task_file_loads_in_a_fresh_process(tmp_path):
    task, raw = task_and_raw("GPT2CausalLM")
    new = rewritten("GPT2CausalLM", "l2+spatial_dropout")
    new.save(tmp_path / "gpt2.keras")
    expected = new.generate(PROMPTS, max_length=8)
    script = textwrap.dedent(f"""
        import keras_rewrite, keras
        model = keras.saving.load_model({str(tmp_path / "gpt2.keras")!r})
        print(type(model).__name__, len(model.losses))
        print(model.generate({PROMPTS!r}, max_length=8))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == [f"GPT2CausalLM {len(new.losses)}", repr(expected)]
