"""`AddOutputs` / `FeatureExtractor`: any layer's output, at any nesting depth, as a model
output. A layer inside a nested model is reached by inlining the nested models on its way
(their layers keep their names and weights), so the result is one level deeper no more.

Output structure:
- `add_outputs`: when the model's outputs are a dict, the new outputs are added to it keyed by
  the names asked for; otherwise the result is a list: the original outputs (flattened, in
  order), then the new ones in the order asked for.
- `feature_extractor`: only the asked outputs, as a dict keyed by the names asked for (the
  layers no longer needed are dropped).
"""
from __future__ import annotations

import keras

from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.surgery._common import (add_output, as_list, clear_outputs, locate,
                                           prune_dead, set_output_structure, single_output)
from keras_rewrite.surgery.errors import SurgeryError


def _locate_all(graph, names, argument):
    found = []
    for name in names:
        g, node = locate(graph, name, inline=True, argument=argument)
        found.append((name, node, single_output(g, node, name, argument)))
    return found


class _NamedLayersPass(Pass):
    """A pass over the outputs of the layers `names` (distinct; names or nested paths)."""

    def __init__(self, names):
        self.names = list(as_list(names, "names"))
        if len(set(self.names)) != len(self.names):
            raise SurgeryError(f"expected distinct names, received {self.names}")

    def get_config(self):
        return {"names": list(self.names)}


class AddOutputs(_NamedLayersPass):
    """Add the outputs of `names` (layer names or nested paths "outer/inner") to the model's
    outputs; the existing outputs and their predictions are unchanged."""

    short_name = "add_outputs"
    summary = "adds the outputs of named layers (nested too) to the model's outputs"
    structural = True
    outputs_unchanged = True

    def run(self, graph) -> PassResult:
        structure = graph.graph["output_structure"]
        if isinstance(structure, dict):
            clash = sorted(set(self.names) & set(structure))
            if clash:
                raise SurgeryError(f"names {clash} are already keys of the outputs of model "
                                   f"'{graph.graph['name']}'")
        found = _locate_all(graph, self.names, "names")
        positions = [add_output(graph, node, 0, shape) for _, node, shape in found]
        if isinstance(structure, dict):
            new = dict(structure)
            new.update({name: p for (name, _, _), p in zip(found, positions)})
        else:
            new = [*keras.tree.flatten(structure), *positions]
        set_output_structure(graph, new)
        return PassResult(self.name, True, [Change(name, "output_added", f"output '{name}'")
                                            for name, _, _ in found], outputs_unchanged=True)


class FeatureExtractor(_NamedLayersPass):
    """Make the outputs of `names` the model's only outputs, a dict keyed by the names; layers
    no longer needed are dropped."""

    short_name = "feature_extractor"
    summary = "makes the outputs of named layers (nested too) the model's outputs, a dict"
    structural = True
    outputs_unchanged = False

    def run(self, graph) -> PassResult:
        found = _locate_all(graph, self.names, "names")
        clear_outputs(graph)
        positions = [add_output(graph, node, 0, shape) for _, node, shape in found]
        set_output_structure(graph, {name: p for (name, _, _), p in zip(found, positions)})
        dropped = prune_dead(graph)
        changes = [Change(name, "output_added", f"output '{name}'") for name, _, _ in found]
        changes += [Change(name, "deleted", "no output needs it") for name in dropped]
        return PassResult(self.name, True, changes, outputs_unchanged=False)
