"""Finding a layer's calls in the graph (nested models too), its weights, and running one
surgery pass through the pipeline with its own error given back."""
from __future__ import annotations

import keras
import numpy as np

from keras_rewrite.graph import kinds
from keras_rewrite import _keras
from keras_rewrite.errors import PassError
from keras_rewrite.graph.schema import iter_graphs, to_graph
from keras_rewrite.surgery.errors import LayerNotFoundError, SurgeryError


def run(model, surgery_pass):
    """`model` rewritten by `surgery_pass`: a new model; a `SurgeryError` as itself."""
    from keras_rewrite.rebuild.pipeline import rewrite_with_report

    try:
        return rewrite_with_report(model, [surgery_pass]).model
    except PassError as exc:  # the pass manager wraps what a pass raises: give ours back
        if isinstance(exc.__cause__, SurgeryError):
            raise exc.__cause__ from None
        raise


def _layer_name(layer) -> str:
    return layer if isinstance(layer, str) else layer.name


def _calls_of(graph, layer):
    """(spec, [(graph, node id), ...]): every call of `layer` (a name or Layer), nested too."""
    name = _layer_name(layer)
    spec, calls = None, []
    for g in iter_graphs(graph):
        for node_id, data in g.nodes(data=True):
            s = data.get("spec")
            if data["kind"] != "layer" or s is None:
                continue
            if (s.source is layer) if not isinstance(layer, str) else (s.name == name):
                spec = s
                calls.append((g, node_id))
    if spec is None and not isinstance(layer, str):  # a Layer object of the same name
        return _calls_of(graph, name)
    if spec is None:
        known = sorted({d["spec"].name for g in iter_graphs(graph)
                        for _, d in g.nodes(data=True) if d["kind"] == "layer"})
        raise LayerNotFoundError(f"model '{graph.graph['name']}' has no layer '{name}'; "
                                 f"its layers are {known[:20]}")
    return spec, calls


def _source_weights(spec) -> dict:
    """{weight label: numpy array} of the original layer (labels as in the report)."""
    if spec.source is None:
        return {}
    out = {}
    for key, v in zip(_keras.variable_key_list(spec.source), spec.source.weights):
        out[kinds.weight_label(key)] = np.asarray(keras.ops.convert_to_numpy(v))
    return out


def find_layer(model, layer):
    """The Layer object of `layer` (a name or a Layer) in `model`, nested models too."""
    spec, _ = _calls_of(to_graph(model), layer)
    return spec.source
