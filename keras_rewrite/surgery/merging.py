"""`Merge`: several models as one.

- how="outputs": a model with every model's inputs and every model's outputs, as flat lists
  (the first model's inputs, then the second's, ...; outputs likewise). Each output gives what
  its own model gives.
- how="concat": the models must have the same inputs (as many, of the same shapes and
  dtypes); the merged model has the first model's inputs, feeds them to every model, and
  concatenates the models' single outputs along the last axis (their other axes must agree).

Layer names: a name that two models use is prefixed in each of them by its model's name and
"_" (``modelname_layername``; "/" is not allowed in a Keras layer name; models of the same name
take ``modelname_i_``); every other name is kept.
"""
from __future__ import annotations

import keras

from keras_rewrite import _keras
from keras_rewrite.graph.schema import LayerSpec, Slot, fresh_name, to_graph
from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.surgery._common import add_output, clear_outputs
from keras_rewrite.surgery.errors import SurgeryError, SurgeryShapeError
from keras_rewrite.surgery.naming import rename_in_graph

HOWS = ("outputs", "concat")


def _names(g):
    return {d["spec"].name for _, d in g.nodes(data=True) if d.get("spec") is not None}


def _outputs(g):
    found = []
    for out_id in g.graph["outputs"]:
        ((u, _, e),) = g.in_edges(out_id, data=True)
        found.append((u, e["tensor_index"], g.nodes[out_id]["output_shapes"]))
    return found


def _input_signature(g):
    return [(tuple(g.nodes[n]["output_shapes"][0]), g.nodes[n]["spec"].config.get("dtype"))
            for n in g.graph["inputs"]]


class Merge(Pass):
    """Merge `models` (keras models or paths of model files) into the model rewritten, by
    `how` (see the module docstring); the result is named `name` (default: the model names
    joined by "_")."""

    short_name = "merge"
    summary = "merges other models into this one: all inputs and outputs, or concatenated outputs"
    structural = True
    outputs_unchanged = False

    def __init__(self, models, how="outputs", name=None):
        if how not in HOWS:
            raise SurgeryError(f"expected how to be one of {list(HOWS)}, received {how!r}")
        if isinstance(models, (str, keras.Model)):
            models = [models]
        self.models, self.how, self.merged_name = list(models), how, name
        if not self.models:
            raise SurgeryError("expected models to hold at least one model to merge, received []")

    def _load(self):
        loaded = []
        for i, m in enumerate(self.models):
            if isinstance(m, str):
                m = keras.saving.load_model(m)
            if not _keras.is_graph_model(m):
                raise SurgeryError(f"models[{i}]: expected a Functional or Sequential keras "
                                   f"model (or the path of one), received {type(m).__name__}")
            loaded.append(m)
        return loaded

    def run(self, graph) -> PassResult:
        graphs = [graph] + [to_graph(m) for m in self._load()]
        model_names = [g.graph["name"] for g in graphs]
        if self.how == "concat":
            self._check_concat(graphs, model_names)
        counts = {}
        for g in graphs:
            for n in _names(g):
                counts[n] = counts.get(n, 0) + 1
        clashing = {n for n, c in counts.items() if c > 1}
        changes = []
        for i, g in enumerate(graphs):
            prefix = (f"{model_names[i]}_" if model_names.count(model_names[i]) == 1
                      else f"{model_names[i]}_{i}_")
            changes += rename_in_graph(g, {n: prefix + n for n in _names(g) & clashing},
                                       "merge")
        final = [n for g in graphs for n in _names(g)]
        clash = sorted({n for n in final if final.count(n) > 1})
        if clash:
            raise SurgeryError(f"merging models {model_names}: prefixing by the model name "
                               f"still leaves layers named {clash} in several models")
        first_inputs = list(graph.graph["inputs"])
        feeds = [dict(zip(g.graph["inputs"], first_inputs)) if self.how == "concat" and i
                 else {} for i, g in enumerate(graphs)]
        outputs = [(feed.get(u, u), index, shapes) for g, feed in zip(graphs, feeds)
                   for u, index, shapes in _outputs(g)]
        clear_outputs(graph)
        for g, feed in zip(graphs[1:], feeds[1:]):
            for n, d in g.nodes(data=True):
                if d["kind"] != "output" and n not in feed:
                    graph.add_node(n, **d)
            for u, v, e in g.edges(data=True):
                if g.nodes[v]["kind"] != "output":
                    graph.add_edge(feed.get(u, u), v, **e)
            if self.how == "outputs":
                graph.graph["inputs"] += list(g.graph["inputs"])
        for i, n in enumerate(graph.graph["inputs"]):
            graph.nodes[n]["index"] = i
        graph.graph["input_structure"] = list(range(len(graph.graph["inputs"])))
        if self.how == "outputs":
            for u, index, shapes in outputs:
                add_output(graph, u, index, None if shapes is None else shapes[0])
            graph.graph["output_structure"] = list(range(len(outputs)))
        else:
            cat = keras.layers.Concatenate(axis=-1, name=fresh_name(graph, "merge_concat"))
            spec = LayerSpec(cat.name, type(cat), cat.get_config())
            graph.add_node(cat.name, kind="layer", spec=spec, output_shapes=None, meta={},
                           call_args=(([Slot(i) for i in range(len(outputs))],), {}))
            for i, (u, index, _) in enumerate(outputs):
                graph.add_edge(u, cat.name, slot=i, tensor_index=index)
            add_output(graph, cat.name)
            graph.graph["output_structure"] = 0
            changes.append(Change(cat.name, "inserted", f"concatenates the outputs of "
                                                        f"{model_names}"))
        graph.graph.update(name=self.merged_name or "_".join(model_names),
                           model_class="Functional", model_type=_keras.Functional)
        changes.append(Change(graph.graph["name"], "merged", f"models {model_names} "
                                                              f"(how={self.how!r})"))
        return PassResult(self.name, True, changes, outputs_unchanged=False)

    def _check_concat(self, graphs, names):
        first = _input_signature(graphs[0])
        for g, name in zip(graphs, names):
            if _input_signature(g) != first:
                raise SurgeryShapeError(
                    f"merge(how='concat'): model '{name}' has inputs {_input_signature(g)}; "
                    f"expected the same inputs (shapes, dtypes) as model '{names[0]}': {first}")
            if len(g.graph["outputs"]) != 1:
                raise SurgeryShapeError(f"merge(how='concat'): model '{name}' has "
                                        f"{len(g.graph['outputs'])} outputs; expected one")
        shapes = [_outputs(g)[0][2] for g in graphs]
        if all(s is not None for s in shapes):
            heads = {tuple(s[0][:-1]) for s in shapes}
            if len(heads) != 1:
                raise SurgeryShapeError(
                    f"merge(how='concat'): the outputs of models {names} have shapes "
                    f"{[tuple(s[0]) for s in shapes]}; expected all axes but the last to agree")
