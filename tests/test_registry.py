"""The pass registry: one declaration per pass, found by every face."""
import pathlib
from importlib import metadata

import keras
import pytest

import keras_rewrite
from keras_rewrite import passes as passes_module
from keras_rewrite.passes import Pass, PassResult, registry

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


class Tagger(Pass):
    """A third-party pass: marks every layer's meta, changes nothing."""

    short_name = "tagger"
    summary = "tags every layer"
    structural = False

    def __init__(self, tag="seen"):
        self.tag = tag

    def get_config(self):
        return {"tag": self.tag}

    def run(self, graph):
        for _, data in graph.nodes(data=True):
            data["meta"]["tag"] = self.tag
        return PassResult(self.name, modified=False)


@pytest.fixture
def third_party(monkeypatch):
    entry = metadata.EntryPoint("tagger", f"{__name__}:Tagger", "keras_rewrite.passes")
    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points",
                        lambda **kw: [entry] if kw.get("group") == "keras_rewrite.passes"
                        else real(**kw))
    registry.passes.cache_clear()
    yield
    registry.passes.cache_clear()


def test_the_readme_table_is_the_registry_s():
    assert registry.option_table() in README.read_text()


def test_every_built_in_pass_is_found_by_its_short_name_and_class():
    found = registry.passes()
    assert {"l2", "spatial_dropout", "reorder", "strip_inference", "fold_batchnorm"} <= set(found)
    for short, cls in found.items():
        assert getattr(passes_module, cls.__name__) is cls
        assert isinstance(keras_rewrite.passes.resolve_passes([short])[0], cls)
        assert cls.summary


def test_a_third_party_pass_registers_through_its_entry_point(third_party):
    x = keras.Input((2,))
    model = keras.Model(x, keras.layers.Dense(1)(x))
    result = keras_rewrite.rewrite_with_report(model, ["tagger"])
    assert result.report.passes[0].pass_name == "Tagger"
    assert "| `tagger` | `Tagger(tag='seen')` | tags every layer | yes |" in registry.option_table()
    assert passes_module.serialize_passes([Tagger("x")]) == [
        {"class": "Tagger", "config": {"tag": "x"}}]


def test_two_passes_with_one_short_name_are_refused(monkeypatch):
    class Clash(Tagger):
        short_name = "l2"

    entry = metadata.EntryPoint("clash", f"{__name__}:Clash", "keras_rewrite.passes")
    monkeypatch.setattr(metadata, "entry_points", lambda **kw: [entry])
    monkeypatch.setattr(entry.__class__, "load", lambda self: Clash)
    registry.passes.cache_clear()
    try:
        with pytest.raises(keras_rewrite.PassError, match="two passes are named 'l2'"):
            registry.passes()
    finally:
        registry.passes.cache_clear()
