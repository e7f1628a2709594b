"""`Quantize`: quantize a model's weights with Keras's own `quantize`, on the rewrite's copy.

What it relies on: Keras 3's `Model.quantize(mode, filters=...)` walks every layer at any
depth (`_flatten_layers`), keeps those whose *name* `filters` selects (a regex searched with
`re.search`, a list of them, or a callable taking the layer), and calls `layer.quantize(mode)`
on the leaf layers (no sub-layers) among them; a layer without a `quantize` raises
NotImplementedError and is left as it is. Dense, EinsumDense, Embedding (int8, int4) and
KerasHub's ReversibleEmbedding implement it.

A pass edits the graph and never builds a model, so the pass decides *which* layers, and the
rebuild does the quantizing: each layer spec holding a selected leaf (itself, or sub-layers of
a KerasHub block or custom layer, by their position in `_flatten_layers`) is listed in the
graph attribute ``quantize``; the rebuild re-creates the layer float as it was, carries its
weights (and a previous pass's weights, e.g. folded BatchNorm), runs the fidelity proof on
that, and then calls Keras's `layer.quantize(mode)` on the new layer. The variables are what
`Model.quantize` gives on the original (same values, same order). Without Keras's
`gc.collect()` per deleted kernel (`Layer.__delattr__`, 0.3 s each on a large heap), which the
rebuild skips while it quantizes.

Left as they are, each with the reason in the report (``skipped``): layers already quantized
(Keras raises on a second quantize), and layers with weights whose class has no `quantize`
(LayerNormalization, a ReversibleEmbedding subclass, ...). A layer Keras refuses while
rebuilding (Embedding has no float8) is turned into a ``skipped`` change in the same report.
``gptq`` and ``awq`` need a calibration dataset: not offered here.

Predictions change by the rounding of the quantized weights (the report's verdict: None,
"equal up to rounding"); the file of the result reloads as Keras's file of a quantized model.

Example:
    >>> import keras_rewrite  # doctest: +SKIP
    >>> small = keras_rewrite.rewrite(model, ["fold_batchnorm", "strip_inference",
    ...                                       "quantize"])  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import re
from unittest import mock

from keras_rewrite.errors import PassError
from keras_rewrite.graph.view import View
from keras_rewrite.passes.base import Change, Pass, PassResult

__all__ = ["Quantize", "MODES", "GRAPH_KEY", "apply_marked"]

MODES = ("int8", "int4", "float8")
GRAPH_KEY = "quantize"  # graph attribute: the marks the rebuild acts on (see apply_marked)


class Quantize(Pass):
    """Quantize the weights of the selected layers with Keras's `layer.quantize(mode)`.

    Args:
        mode: "int8" (default), "int4" or "float8".
        filters: None (every layer), a regex string searched in each layer's name, a list of
            them, or a callable taking the layer and returning a bool, as
            `keras.Model.quantize` accepts (a callable cannot be saved in a recipe file).
    """

    short_name = "quantize"
    summary = ("quantizes Dense, EinsumDense and Embedding weights (int8, int4, float8) with "
               "Keras's own quantize; already quantized layers are skipped")
    outputs_unchanged = None  # rounding of the weights
    structural = True  # the rebuild quantizes the new layers

    def __init__(self, mode: str = "int8", filters=None):
        if mode not in MODES:
            raise PassError(f"Expected mode to be one of {list(MODES)} (gptq and awq need a "
                            f"calibration dataset). Received: mode={mode!r}")
        if isinstance(filters, tuple):
            filters = list(filters)
        if filters is not None and not (isinstance(filters, str) or callable(filters) or (
                isinstance(filters, list) and all(isinstance(f, str) for f in filters))):
            raise PassError("Expected filters to be None, a regex string, a list of regex "
                            "strings or a callable taking a layer. Received: "
                            f"filters={filters!r} of type {type(filters).__name__}")
        for pattern in [filters] if isinstance(filters, str) else (
                filters if isinstance(filters, list) else []):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise PassError(f"Expected filters to hold valid regular expressions. "
                                f"Received: {pattern!r} ({exc})") from None
        self.mode = mode
        self.filters = filters

    def get_config(self) -> dict | None:
        if callable(self.filters) and not isinstance(self.filters, str):
            return None  # a function cannot be saved: the result saves as a graph
        return {"mode": self.mode, "filters": self.filters}

    def __repr__(self):
        return f"Quantize(mode={self.mode!r}, filters={self.filters!r})"

    def selects(self, layer) -> bool:
        """Keras's `should_quantize_layer`."""
        if self.filters is None:
            return True
        if isinstance(self.filters, str):
            return bool(re.search(self.filters, layer.name))
        if isinstance(self.filters, list):
            return any(re.search(p, layer.name) for p in self.filters)
        return bool(self.filters(layer))

    def run(self, graph) -> PassResult:
        result = PassResult(self.name, modified=False, outputs_unchanged=True)
        marks = graph.graph.setdefault(GRAPH_KEY, [])
        seen = set()
        for node in View(graph).layers():
            spec = node.spec
            if id(spec) in seen or node.is_model:
                continue
            seen.add(id(spec))
            source = spec.source
            if source is None or not hasattr(source, "_flatten_layers"):
                continue  # a layer a pass made: nothing to quantize from
            leaves = []
            for index, layer in enumerate(source._flatten_layers(include_self=True,
                                                                recursive=True)):
                if not self.selects(layer) or len(list(layer._flatten_layers())) != 1:
                    continue
                where = spec.name if index == 0 else f"{spec.name}/{_relative(source, layer)}"
                mode = getattr(layer, "quantization_mode", None)
                if mode is not None:
                    result.changes.append(Change(where, "skipped", (
                        f"{type(layer).__name__} is already quantized (dtype policy "
                        f"{layer.dtype_policy.name!r}): Keras cannot quantize a layer twice")))
                    continue
                if type(layer).quantize is _base_quantize():
                    if layer.weights:
                        result.changes.append(Change(where, "skipped", (
                            f"{type(layer).__name__} has no quantize method in Keras: its "
                            "weights stay float")))
                    continue
                change = Change(where, "quantized", f"{self.mode} ({type(layer).__name__}, "
                                                    f"Keras's {type(layer).__name__}.quantize)")
                result.changes.append(change)
                leaves.append((index, type(layer).__name__, change))
            if leaves:
                marks.append({"spec": spec, "mode": self.mode, "leaves": leaves,
                              "result": result})
                result.modified = True
        if result.modified:
            result.outputs_unchanged = None
        return result


def _base_quantize():
    import keras

    return keras.layers.Layer.quantize


def _relative(parent, layer) -> str:
    path, top = getattr(layer, "path", None), getattr(parent, "path", None)
    if path and top and path.startswith(top + "/"):
        return path[len(top) + 1:]
    return layer.name


@contextlib.contextmanager
def _without_gc_collect():
    # Keras's Layer.__delattr__ runs gc.collect() for every variable attribute it deletes:
    # quantize deletes each float kernel. Collection is only delayed, never skipped for good.
    with mock.patch("gc.collect", lambda *args: 0):
        yield


def marks_by_spec(graph) -> dict:
    """{id(spec): mark} from the ``quantize`` attribute of `graph` and its nested graphs."""
    from keras_rewrite.graph.schema import iter_graphs

    out = {}
    for g in iter_graphs(graph):
        for mark in g.graph.get(GRAPH_KEY) or ():
            out.setdefault(id(mark["spec"]), []).append(mark)
    return out


def apply_marked(marks, layer) -> None:
    """Quantize the marked leaves of `layer` (a rebuilt layer, weights carried) with Keras's
    `quantize`; what Keras refuses becomes a ``skipped`` change of the pass's result."""
    import warnings

    flat = list(layer._flatten_layers(include_self=True, recursive=True))
    for mark in marks:
        for index, class_name, change in mark["leaves"]:
            leaf = flat[index] if index < len(flat) else None
            if leaf is None or type(leaf).__name__ != class_name:
                change.action, change.detail = "skipped", (
                    f"the rebuilt layer has no {class_name} at this place (a pass changed "
                    f"{mark['spec'].name}'s sub-layers); not quantized")
                continue
            if getattr(leaf, "quantization_mode", None) is not None:
                change.action, change.detail = "skipped", (
                    f"{class_name} is already quantized (dtype policy "
                    f"{leaf.dtype_policy.name!r}, by an earlier quantize pass)")
                continue
            try:
                with _without_gc_collect(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    leaf.quantize(mark["mode"])
            except (NotImplementedError, ValueError) as exc:
                change.action = "skipped"
                change.detail = (f"Keras refuses to quantize {class_name} to {mark['mode']}: "
                                 f"{str(exc).splitlines()[0]}")
        result = mark["result"]
        result.modified = any(c.action == "quantized" for c in result.changes)
