"""The command line on a saved KerasHub task (issue 17): the converted file reloads as the
task's class with its preprocessor and vocabulary, the L2 penalty, the same predictions on raw
strings and the same greedy text; the reload check would refuse a file that reloads as
another class."""
from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_rewrite
from keras_rewrite import verify
from keras_rewrite.files.atomic_save import OutputError
from keras_rewrite.conversion import check_written

import hub_tasks

pytestmark = pytest.mark.slow
PROMPTS = ["the quick", "a fox"]


def test_convert_keeps_a_causal_lm_a_causal_lm(tmp_path):
    task, raw = hub_tasks.gpt2_causal_lm()
    task.save(tmp_path / "gpt2.keras")
    done = subprocess.run([sys.executable, "-m", "keras_rewrite", "convert",
                           tmp_path / "gpt2.keras", "-o", tmp_path / "gpt2_l2.keras",
                           "--pass", "l2", "--pass", "spatial_dropout"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    loaded = keras.saving.load_model(tmp_path / "gpt2_l2.keras")
    assert isinstance(loaded, type(task)) and isinstance(loaded.backbone, type(task.backbone))
    assert loaded.preprocessor.tokenizer.get_vocabulary() == \
        task.preprocessor.tokenizer.get_vocabulary()
    assert len(loaded.losses) > 0 == len(task.losses)
    np.testing.assert_array_equal(np.asarray(loaded.predict(raw, verbose=0)),
                                  np.asarray(task.predict(raw, verbose=0)))
    loaded.compile(sampler="greedy")
    assert loaded.generate(PROMPTS, max_length=8) == task.generate(PROMPTS, max_length=8)


@keras.saving.register_keras_serializable("test_task_files")
class TinyTask(keras.Model):
    """A Functional subclass in KerasHub's style: config = constructor arguments."""

    def __init__(self, width=4, **kwargs):
        inputs = keras.Input((3,), name="x")
        super().__init__(inputs, keras.layers.Dense(width, name="dense")(inputs), **kwargs)
        self.width = width

    def get_config(self):
        return {"width": self.width, "name": self.name, "trainable": self.trainable}


def test_the_reload_check_refuses_a_file_that_reloads_as_another_class(tmp_path):
    def tanh(graph):  # a custom pass: it cannot be re-applied, so the file holds the graph
        graph.nodes["dense"]["spec"].config["activation"] = "tanh"
        return keras_rewrite.passes.PassResult("tanh", modified=True, outputs_unchanged=False)

    new = keras_rewrite.rewrite(TinyTask(name="tiny"), [tanh])
    assert isinstance(new, TinyTask)
    new.save(tmp_path / "graph.keras")
    x = verify.sample_batch(new, batch=2)[0]
    with pytest.raises(OutputError, match="would reload as a RewrittenFunctional, not a "
                                          "TinyTask"):
        check_written(tmp_path / "graph.keras", tmp_path / "out.keras", new, x,
                      verify.predict(new, x))
