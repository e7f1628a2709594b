"""The pipeline: to_graph -> passes -> to_model -> checks, never touching the caller's model.

`keras_rewrite.api` is its public face; surgery and lint run it from here.
"""
from __future__ import annotations

import dataclasses
import json

import keras

from keras_rewrite import _keras
from keras_rewrite.graph import kinds
from keras_rewrite.rebuild import model_class
from keras_rewrite.rebuild import compile
from keras_rewrite.errors import RebuildError, RewriteError, ShapeMismatchError
from keras_rewrite.graph.edit import inline_models_sharing_layers
from keras_rewrite.graph.schema import graph_unchanged, to_graph, validate
from keras_rewrite.rebuild.rewritten_model import SavesRewrite, set_recipe_runner
from keras_rewrite.passes import resolve_passes, serialize_passes
from keras_rewrite.passes.base import run_passes
from keras_rewrite.rebuild.rebuilder import to_model
from keras_rewrite.report import Report


@dataclasses.dataclass
class RewriteResult:
    model: keras.Model
    report: Report


def rewrite_with_report(model, passes=(), *, copy=True) -> RewriteResult:
    """Like `rewrite`, and also return the `Report` of what each pass and the rebuild did."""
    if not isinstance(copy, bool):
        raise RewriteError(f"Expected copy=True or copy=False. Received: copy={copy!r}")
    passes = resolve_passes(passes)
    graph = to_graph(model)
    validate(graph)
    report = Report(passes=run_passes(graph, passes))
    if not graph_unchanged(graph) and not _saves_as_recipe(model, passes):
        # The result will be saved as a graph (see rebuild.new_model): a layer shared across
        # nesting levels (a tied embedding) would not reload, one level holds it fine. A
        # recipe (a KerasHub task) keeps its nesting: `task.backbone` stays a backbone.
        for name in inline_models_sharing_layers(graph):
            report.notes.append(f"nested model '{name}' inlined into '{graph.graph['name']}': "
                                "it shares a layer with it, which a saved graph cannot hold "
                                "across levels")
    with _keras.distribution_scope(model):
        try:
            new_model = to_model(graph, report=report, move=not copy)
        except (RebuildError, ShapeMismatchError) as exc:
            modifying = [r.pass_name for r in report.passes if r.modified]
            if modifying:
                exc.args = (f"{exc.args[0]} (after passes that modified the graph: "
                            f"{', '.join(modifying)})",)
            raise
        compile.compile_like(new_model, model)
    _record_recipe(model, passes, new_model, report)
    if not copy:
        model_class.mark_moved(model, new_model.name)
    return RewriteResult(new_model, report)


def _saves_as_recipe(model, passes) -> bool:
    """Whether the rewritten `model` will save as its original's config plus `passes` (see
    `_record_recipe`): a class that saves itself as constructor arguments, built-in passes."""
    return kinds.saves_as_arguments(type(model)) and serialize_passes(passes) is not None


def _record_recipe(model, passes, new_model, report) -> None:
    """Let a rewritten constructor-argument model (KerasHub) save as its original + passes.

    See `keras_rewrite.rebuild.rewritten_model`: its layers cannot always be saved one by one, its
    original's config always can. Needs every pass to be a built-in one with its settings.
    """
    if not isinstance(new_model, SavesRewrite) or model_class.model_class_of(model)[1]:
        return
    specs = serialize_passes(passes)
    if specs is None:
        report.notes.append(
            f"model '{new_model.name}' saves as a graph: a custom pass cannot be re-applied "
            f"when loading, so {type(model).__name__}'s constructor arguments cannot stand for "
            "it")
        return
    from keras_rewrite._keras import policies_kept

    try:
        # Keras's DTypePolicyMap.get_config renames the live policies it holds: undo that.
        with policies_kept(model):
            original = keras.saving.serialize_keras_object(model)
        json.dumps(original)
    except Exception as exc:
        report.notes.append(f"model '{new_model.name}' saves as a graph: the original's config "
                            f"cannot be saved ({type(exc).__name__}: {exc})")
        return
    new_model.set_recipe({"model": original, "passes": specs})
    for part, nested in _nested_rewritten(new_model):  # a task's backbone, saved alone
        nested.set_recipe({"model": original, "passes": specs, "part": part})
    # Its layers' configs are no longer what a file holds (see rebuild.new_model's note).
    report.notes[:] = [n for n in report.notes
                       if not n.startswith(f"model '{new_model.name}' works, but a file")]
    report.notes.append(
        f"model '{new_model.name}' saves as {type(model).__name__}'s constructor arguments plus "
        f"the passes {[s['class'] for s in specs]}: loading (after `import keras_rewrite`) "
        "builds it and applies them again, then loads the trained weights")


def _nested_rewritten(model, path=()):
    """(layer names from `model` down, nested model) for each nested `SavesRewrite` model."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if isinstance(layer, SavesRewrite):
                yield [*path, layer.name], layer
            yield from _nested_rewritten(layer, (*path, layer.name))


def rewrite(model, passes=(), *, copy=True) -> keras.Model:
    """Return a rewritten copy of a built Functional or Sequential Keras model.

    Args:
        model: the model; it is never modified (weights, layer configs, inbound nodes).
        passes: passes to apply in order: `Pass` objects, plain functions taking the graph,
            or the short names "l2", "spatial_dropout" and "reorder" (default settings).
            With no passes the result is an exact copy with the same weights.
        copy: True (default): the new model has its own weights. False: the layers no pass
            changed take the original's variables instead of copies, so a model of several
            GB needs no second set of weights; the original is unusable afterwards (calling
            it raises `RewriteError` saying so).

    Returns:
        A new model with every weight that still fits carried over; compiled like the
        original (same loss and metrics, a fresh optimizer of the same config) if the
        original was compiled.

    Example:
        >>> import keras, numpy as np
        >>> import keras_rewrite
        >>> inputs = keras.Input((3,))
        >>> model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        >>> copy = keras_rewrite.rewrite(model)
        >>> x = np.ones((1, 3), "float32")
        >>> bool(np.array_equal(model.predict(x, verbose=0), copy.predict(x, verbose=0)))
        True
    """
    return rewrite_with_report(model, passes, copy=copy).model


# A file holding a recipe loads by building the original and running this pipeline again.
set_recipe_runner(lambda original, passes: rewrite(original, passes, copy=False))
