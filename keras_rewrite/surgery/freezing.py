"""`Freeze` / `Unfreeze`: set `trainable` on the layers whose names match fnmatch globs.

A pattern without "/" is matched against every layer's own name, at any nesting depth; one with
"/" against its path ("backbone/conv1_conv", "backbone/conv*"). A nested model that matches
is frozen (unfrozen) with every layer inside it; unfreezing a layer inside a frozen nested
model sets that model's own flag back to trainable (its other layers stay frozen). A frozen
BatchNormalization runs in inference mode even in `fit` (Keras 3 does so for a layer with
trainable=False): its moving statistics stay as they are.

The rebuild gives a re-created layer its source layer's `trainable` flags (sub-layers' too),
so a layer whose flag changes gets, as its source, a copy of the original layer with the new
flag (`layer_copy.copy_layer_object`: its own variables, holding the same values; the original is
untouched); the copy lives only as long as the graph.
"""
from __future__ import annotations

from fnmatch import fnmatchcase

from keras_rewrite.rebuild import layer_copy
from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.surgery._common import as_list
from keras_rewrite.surgery.errors import LayerNotFoundError, UnsupportedLayerError


def _walk(graph, prefix="", parents=()):
    """(path, spec, parent graphs) of every layer call's spec, once per layer, depth first."""
    seen = set()
    for _, data in graph.nodes(data=True):
        spec = data.get("spec")
        if data["kind"] != "layer" or spec is None or id(spec) in seen:
            continue
        seen.add(id(spec))
        path = prefix + spec.name
        yield path, spec, parents
        if spec.subgraph is not None:
            yield from _walk(spec.subgraph, path + "/", (*parents, spec.subgraph))


def _matches(path, pattern):
    return fnmatchcase(path if "/" in pattern else path.rsplit("/", 1)[-1], pattern)


def _set(spec, value, path, changes):
    if spec.subgraph is not None:
        if spec.subgraph.graph.get("trainable", True) != value:
            spec.subgraph.graph["trainable"] = value
            changes.append(Change(path, "frozen" if not value else "unfrozen"))
        for inner_path, inner, _ in _walk(spec.subgraph, path + "/"):
            _set(inner, value, inner_path, changes)
        return
    if spec.source is not None and spec.source.trainable != value:
        try:
            spec.source = layer_copy.copy_layer_object(spec.source)
        except Exception as exc:
            raise UnsupportedLayerError(
                f"cannot {'freeze' if not value else 'unfreeze'} layer '{path}' "
                f"({spec.class_name}): its object cannot be copied to carry the new flag: "
                f"{type(exc).__name__}: {exc}") from None
        spec.source.trainable = value
        changes.append(Change(path, "frozen" if not value else "unfrozen"))
    if "trainable" in spec.config:
        spec.config["trainable"] = value


class Freeze(Pass):
    """Make the layers matching `patterns` (fnmatch globs, see the module docstring)
    non-trainable."""

    short_name = "freeze"
    summary = "makes the layers whose names match glob patterns non-trainable"
    structural = True
    outputs_unchanged = True
    value = False

    def __init__(self, patterns):
        self.patterns = [str(p) for p in as_list(patterns, "patterns", "glob patterns")]

    def get_config(self):
        return {"patterns": list(self.patterns)}

    def run(self, graph) -> PassResult:
        layers = list(_walk(graph))
        changes, done = [], set()
        for pattern in self.patterns:
            hits = [(path, spec, parents) for path, spec, parents in layers
                    if _matches(path, pattern)]
            if not hits:
                raise LayerNotFoundError(
                    f"patterns: {pattern!r} matches no layer of model '{graph.graph['name']}'; "
                    f"its layers are {[p for p, _, _ in layers][:20]}")
            for path, spec, parents in hits:
                if path in done:
                    continue
                done.add(path)
                _set(spec, self.value, path, changes)
                if self.value:  # a layer is only trained when every model around it is
                    for g in (graph, *parents):
                        if not g.graph.get("trainable", True):
                            g.graph["trainable"] = True
                            changes.append(Change(g.graph["name"], "unfrozen",
                                                  "its own flag, to train what is inside"))
        return PassResult(self.name, bool(changes), changes, outputs_unchanged=True)


class Unfreeze(Freeze):
    """Make the layers matching `patterns` trainable (see `Freeze`)."""

    short_name = "unfreeze"
    summary = "makes the layers whose names match glob patterns trainable"
    value = True


__all__ = ["Freeze", "Unfreeze"]
