"""The pass registry: one declaration per pass, found by every face."""
import os
import pathlib
import subprocess
import sys
from importlib import metadata

import keras
import pytest

import keras_rewrite
from keras_rewrite import passes as passes_module
from keras_rewrite.passes import Pass, PassResult, registry

README = pathlib.Path(__file__).resolve().parent.parent.parent / "README.md"


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
    assert {"l2", "spatial_dropout", "reorder", "strip_inference", "fold_batchnorm",
            "replace_activation"} <= set(found)
    for short, cls in found.items():
        assert getattr(passes_module, cls.__name__) is cls
        if all(default is not registry.REQUIRED for _, default in registry.options(cls)):
            try:  # built with its defaults, or refused saying which option it expects
                assert isinstance(keras_rewrite.passes.resolve_passes([short])[0], cls)
            except keras_rewrite.RewriteError as exc:
                assert "expected" in str(exc), (short, exc)
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


# ------------------------------------------------------------ declarations read from source


def test_the_source_reader_gives_every_built_in_pass_s_declaration_as_imported():
    """The listing (`keras-rewrite passes`, the README table) reads the pass modules with
    `ast`; `rewrite` imports them. Every built-in pass must be readable without importing
    (strict: no fallback) and read as exactly what its class declares."""
    imported = {short: registry.Declaration.of(cls) for short, cls in registry.passes().items()
                if cls.__module__.startswith("keras_rewrite.")}
    read = registry._declarations_from_source(strict=True)
    assert list(read) == list(imported)  # same passes, same order
    for short in imported:
        assert read[short] == imported[short], short


def test_listing_the_passes_imports_neither_keras_nor_tensorflow():
    """`keras-rewrite passes` in a fresh interpreter: the same table, no Keras loaded."""
    root = str(pathlib.Path(__file__).resolve().parent.parent.parent)
    script = ("import sys\n"
              "from keras_rewrite.cli.entry import main\n"
              "code = main(['passes'])\n"
              "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('keras', 'tensorflow', 'jax', 'numpy', 'networkx'))\n"
              "print('HEAVY', heavy, code)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=root, timeout=60)
    assert done.returncode == 0, done.stderr
    table, _, last = done.stdout.rstrip("\n").rpartition("\n")
    assert last == "HEAVY [] 0"
    assert table == registry.option_table()


def test_a_module_the_reader_cannot_follow_is_imported_instead(monkeypatch):
    def unreadable(module):
        raise registry.Unreadable(f"{module}: pretend")

    monkeypatch.setattr(registry, "_read_module", unreadable)
    registry._declarations_from_source.cache_clear()
    try:
        with pytest.raises(registry.Unreadable, match="pretend"):
            registry._declarations_from_source(strict=True)
        assert registry._declarations_from_source() == registry._declarations_from_source.__wrapped__(
            strict=False)
        assert registry.declarations()["l2"] == registry.Declaration.of(
            registry.passes()["l2"])
    finally:
        registry._declarations_from_source.cache_clear()


PASS_MODULE = '''
from .rules import Rule
from .base import Pass as BasePass

DEFAULT = ("a", "b")


class Middle(BasePass):
    """Not a pass itself: no short name; declares what its subclasses inherit."""

    structural = False
    summary = ("inherited " "summary")

    def __init__(self, first, second=DEFAULT, *rest, third=None, fourth, **more):
        pass


class Mine(Middle):
    short_name = "mine"
    outputs_unchanged: bool | None = True


class MyRule(Rule):
    short_name = "my_rule"
    summary = "a rule"


class NotAPass:
    short_name = "not_a_pass"
'''


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A copy of keras_rewrite's base classes and one extra pass module, for the reader."""
    real = pathlib.Path(registry.__file__).resolve().parent.parent
    package = tmp_path / "keras_rewrite"
    (package / "passes").mkdir(parents=True)
    for name in ("__init__.py", "passes/rules.py", "passes/__init__.py", "passes/base.py"):
        (package / name).write_text((real / name).read_text())
    monkeypatch.setattr(registry, "_ROOT", tmp_path)
    monkeypatch.setattr(registry, "_HERE", package / "passes")
    registry._source.cache_clear()
    registry._declarations_from_source.cache_clear()
    yield package / "passes"
    registry._source.cache_clear()
    registry._declarations_from_source.cache_clear()


def test_the_reader_follows_base_classes_constants_and_every_kind_of_argument(fake_package):
    (fake_package / "mine.py").write_text(PASS_MODULE)
    read = registry._declarations_from_source(strict=True)
    assert list(read) == ["mine", "my_rule"]
    mine = read["mine"]
    assert (mine.class_name, mine.module, mine.summary, mine.structural,
            mine.outputs_unchanged) == ("Mine", "keras_rewrite.passes.mine",
                                        "inherited summary", False, True)
    assert mine.options == (("first", registry.REQUIRED), ("second", ("a", "b")),
                            ("third", None), ("fourth", registry.REQUIRED))
    rule = read["my_rule"]  # Rule's outputs_unchanged (None) and Pass's structural (True)
    assert (rule.structural, rule.outputs_unchanged, rule.options) == (True, None, ())
    assert "`Mine(first, second=('a', 'b'), third=None, fourth)`" in registry.option_table()


def test_a_declaration_that_is_not_a_literal_is_unreadable(fake_package):
    (fake_package / "odd.py").write_text(
        "from .base import Pass\n\n\nclass Odd(Pass):\n    short_name = 'odd'\n"
        "    summary = 'made ' + 'at import'\n")
    with pytest.raises(registry.Unreadable, match=r"Odd.summary is not a literal: "
                                                  r"'made ' \+ 'at import'"):
        registry._declarations_from_source(strict=True)


def test_a_pass_named_without_the_options_it_needs_is_a_pass_error():
    import keras

    import keras_rewrite

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="relu")(inputs))
    with pytest.raises(keras_rewrite.PassError, match=r"pass 'replace_activation' needs "
                                                      r"options: .*'old' and 'new'"):
        keras_rewrite.rewrite(model, ["replace_activation"])
