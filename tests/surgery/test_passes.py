"""The model-level surgeries are passes too: declared like the registry's, usable by rewrite."""
import inspect

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_rewrite
from keras_rewrite import surgery
from keras_rewrite.passes import Pass, registry

CLASSES = [surgery.AddOutputs, surgery.FeatureExtractor, surgery.Truncate, surgery.ReplaceHead,
           surgery.SetInputChannels, surgery.RenameLayers, surgery.Merge, surgery.Freeze,
           surgery.Unfreeze, surgery.ReplaceBlock]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_declared_like_a_registered_pass(cls):
    assert issubclass(cls, Pass)
    for attr in ("short_name", "summary"):
        assert isinstance(cls.__dict__.get(attr), str) and cls.__dict__[attr], attr
    assert cls.structural is True
    assert cls.outputs_unchanged in (True, False, None)
    assert registry.passes()[cls.short_name] is cls  # registered, no clash with another pass
    assert inspect.signature(cls.__init__).parameters  # options are __init__ arguments


def test_short_names_are_unique():
    names = [c.short_name for c in CLASSES]
    assert len(set(names)) == len(names)


def test_passes_run_through_rewrite_with_plain_options_and_report_changes():
    inp = keras.Input((6,), name="x")
    h = L.Dense(4, name="h")(inp)
    model = keras.Model(inp, L.Dense(2, name="o")(L.ReLU(name="r")(h)), name="m")
    result = keras_rewrite.rewrite_with_report(model, [
        surgery.RenameLayers(mapping={"o": "logits"}),
        surgery.AddOutputs(["h"]),
    ])
    x = np.ones((2, 6), "float32")
    y, hh = result.model.predict(x, verbose=0)
    np.testing.assert_array_equal(y, model.predict(x, verbose=0))
    np.testing.assert_array_equal(hh, model.get_layer("h")(x).numpy())
    actions = {(c.layer, c.action) for r in result.report.passes for c in r.changes}
    assert {("logits", "renamed"), ("h", "output_added")} <= actions
    head = keras.saving.serialize_keras_object(L.Dense(3, name="new_head"))
    cut = keras_rewrite.rewrite(model, [surgery.ReplaceHead(at="h", head=head)])
    assert tuple(cut.output.shape) == (None, 3) and cut.layers[-1].name == "new_head"
