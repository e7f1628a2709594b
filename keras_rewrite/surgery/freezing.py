"""`Freeze` / `Unfreeze`: set `trainable` on the layers whose names match fnmatch globs.

A pattern without "/" is matched against every layer's own name, at any nesting depth; one with
"/" against its path ("backbone/conv1_conv", "backbone/conv*"). A nested model that matches
is frozen (unfrozen) with every layer inside it; unfreezing a layer inside a frozen nested
model sets that model's own flag back to trainable (its other layers stay frozen). A frozen
BatchNormalization runs in inference mode even in `fit` (Keras 3 does so for a layer with
trainable=False): its moving statistics stay as they are.

Known gap: the rebuild (`keras_rewrite.rebuild.rebuilder`, `_keras.carry_trainable_flags`)
gives every rebuilt layer its source layer's `trainable` flag after creating it from its
config, so the flag the pass writes in the config does not survive `keras_rewrite.rewrite`
alone. `freeze` / `unfreeze` therefore set the flags the pass decided (`Freeze.flags`,
{layer path: trainable}) on the rebuilt model afterwards; a pass list run through
`rewrite` needs the same (`apply_flags(model, pass_.flags)`).
"""
from __future__ import annotations

from fnmatch import fnmatchcase

from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.surgery._common import as_list
from keras_rewrite.surgery.errors import LayerNotFoundError, SurgeryError


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


def _path_of(layers, subgraph):
    return next(p for p, spec, _ in layers if spec.subgraph is subgraph)


def _matches(path, pattern):
    return fnmatchcase(path if "/" in pattern else path.rsplit("/", 1)[-1], pattern)


def apply_flags(model, flags) -> None:
    """Set `trainable` on `model`'s layers by path ({"outer/inner": bool}); a nested model's
    own flag only (its layers' paths are in `flags` when they change too)."""
    from keras_rewrite import _keras

    for path, value in flags.items():
        layer = model
        for part in path.split("/"):
            layer = layer.get_layer(part)
        if _keras.is_graph_model(layer):
            _keras.set_own_trainable(layer, value)
        else:
            layer.trainable = value


def _set(spec, value, path, changes, flags=None):
    if spec.subgraph is not None:
        if spec.subgraph.graph.get("trainable", True) != value:
            spec.subgraph.graph["trainable"] = value
            changes.append(Change(path, "frozen" if not value else "unfrozen"))
        flags[path] = value
        for inner_path, inner, _ in _walk(spec.subgraph, path + "/"):
            _set(inner, value, inner_path, changes, flags)
        return
    if spec.config.get("trainable", True) != value:
        spec.config["trainable"] = value
        changes.append(Change(path, "frozen" if not value else "unfrozen"))
    flags[path] = value


class Freeze(Pass):
    """Make the layers matching `patterns` (fnmatch globs, see the module docstring)
    non-trainable."""

    short_name = "freeze"
    summary = "makes the layers whose names match glob patterns non-trainable"
    structural = True
    outputs_unchanged = True
    value = False

    def __init__(self, patterns=()):
        self.patterns = [str(p) for p in as_list(patterns, "patterns", "glob patterns")]

    def get_config(self):
        return {"patterns": list(self.patterns)}

    def run(self, graph) -> PassResult:
        layers = list(_walk(graph))
        changes, done = [], set()
        self.flags = flags = {}  # {layer path: trainable}, what `apply_flags` sets
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
                _set(spec, self.value, path, changes, flags)
                if self.value:  # a layer is only trained when every model around it is
                    for g in (graph, *parents):
                        if not g.graph.get("trainable", True):
                            g.graph["trainable"] = True
                            if g is not graph:
                                flags.setdefault(_path_of(layers, g), True)
                            changes.append(Change(g.graph["name"], "unfrozen",
                                                  "its own flag, to train what is inside"))
        return PassResult(self.name, bool(changes), changes, outputs_unchanged=True)


class Unfreeze(Freeze):
    """Make the layers matching `patterns` trainable (see `Freeze`)."""

    short_name = "unfreeze"
    summary = "makes the layers whose names match glob patterns trainable"
    value = True


__all__ = ["Freeze", "Unfreeze", "apply_flags", "SurgeryError"]
