"""`to_model`: a graph (see `keras_rewrite.graph`) becomes a working Keras model again.

Layers are re-created from their specs in topological order, keeping their names; a shared
spec becomes one shared layer; nested models are rebuilt from their own graphs. Weights are
carried over by `keras_rewrite.weights` right after each layer is built, and the new layers
are built with zero initializers first, since their values are about to be overwritten.
Then `keras_rewrite.checks` compares output shapes with the original's.
"""
from __future__ import annotations

import contextlib

import keras
import networkx as nx

from . import _keras, checks
from .errors import RebuildError
from .graph import Slot, iter_graphs, map_structure, topological_order
from .report import Report
from .weights import initialize_new_weights, transfer_weights


def to_model(graph: nx.MultiDiGraph, *, report: Report | None = None,
             check: bool = True) -> keras.Model:
    """Rebuild a Keras model from `graph`.

    Args:
        graph: a graph made by `to_graph` (and possibly edited by passes).
        report: a `Report` to record, per layer, which weights were carried over, left new
            (and why) or dropped. A new one is used when omitted.
        check: compare the rebuilt model's output shapes with the original's and raise
            `ShapeMismatchError` naming the first layer whose output shape changed.

    Returns:
        A new model; the original model and its layers are not touched.
    """
    report = report if report is not None else Report()
    size = sum(g.number_of_nodes() for g in iter_graphs(graph))
    with _keras.recursion_limit_for(size):
        rebuilder = _Rebuilder(report)
        model = rebuilder.build(graph)
        if check:
            checks.check_output_shapes(graph, model, rebuilder.shapes[id(graph)])
    return model


class _Rebuilder:
    def __init__(self, report: Report):
        self.report = report
        self.layers = {}  # id(spec) -> new layer (or model), so shared specs stay shared
        self.shapes = {}  # id(graph) -> {node id: [output shapes]}

    def layer_for(self, spec):
        layer = self.layers.get(id(spec))
        if layer is None:
            if spec.subgraph is not None:
                layer = self.build(spec.subgraph)
            else:
                try:
                    layer = _keras.new_operation(spec.cls, spec.config, spec.source)
                except Exception as exc:
                    raise RebuildError(
                        f"layer '{spec.name}': could not re-create {spec.class_name} from its "
                        f"config: {type(exc).__name__}: {exc}") from exc
            self.layers[id(spec)] = layer
        return layer

    def call(self, node_id, data, inputs):
        spec = data["spec"]
        layer = self.layer_for(spec)
        first_build = spec.subgraph is None and not getattr(layer, "built", True)
        args, kwargs = map_structure(
            data["call_args"], lambda x: inputs[x.index] if isinstance(x, Slot) else x)
        zeroed = first_build and spec.source is not None
        init = _keras.zero_initializers(layer) if zeroed else contextlib.nullcontext()
        try:
            with init:
                outputs = layer(*args, **kwargs)
        except Exception as exc:
            received = [tuple(t.shape) for t in keras.tree.flatten((args, kwargs))
                        if isinstance(t, keras.KerasTensor)]
            raise RebuildError(
                f"layer '{spec.name}' ({spec.class_name}) could not be called on inputs of "
                f"shape {received}: {type(exc).__name__}: {exc}") from exc
        if (spec.subgraph is None and isinstance(layer, keras.layers.Layer)
                and layer.name not in self.report.layers):
            # Every rebuilt layer is reported, weightless ones too (built at creation).
            record = self.report.layers[layer.name] = transfer_weights(spec, layer)
            if zeroed:
                initialize_new_weights(spec, layer, record)
        return keras.tree.flatten(outputs)

    def build(self, graph):
        if graph.graph["model_class"] == "Sequential" and _is_chain(graph):
            return self.build_sequential(graph)
        produced = {}
        shapes = {}
        for node_id in topological_order(graph):
            data = graph.nodes[node_id]
            kind = data["kind"]
            if kind == "output":
                continue
            if kind == "input":
                layer = self.layer_for(data["spec"])
                produced[node_id] = [layer.output]
            else:
                inputs = {}
                for producer, _, edge in graph.in_edges(node_id, data=True):
                    inputs[edge["slot"]] = produced[producer][edge["tensor_index"]]
                produced[node_id] = self.call(node_id, data, inputs)
            shapes[node_id] = [tuple(t.shape) for t in produced[node_id]]
        outputs = []
        for out_id in graph.graph["outputs"]:
            ((producer, _, edge),) = graph.in_edges(out_id, data=True)
            outputs.append(produced[producer][edge["tensor_index"]])
        inputs = [produced[n][0] for n in graph.graph["inputs"]]
        model = keras.Model(
            inputs=map_structure(graph.graph["input_structure"], inputs.__getitem__),
            outputs=map_structure(graph.graph["output_structure"], outputs.__getitem__),
            name=graph.graph["name"],
        )
        _keras.set_own_trainable(model, graph.graph.get("trainable", True))
        self.shapes[id(graph)] = shapes
        return model

    def build_sequential(self, graph):
        order = topological_order(graph)
        input_id = graph.graph["inputs"][0]
        input_layer = self.layer_for(graph.nodes[input_id]["spec"])
        chain = [n for n in order if graph.nodes[n]["kind"] in ("layer", "op")]
        specs = [graph.nodes[n]["spec"] for n in chain]
        layers = [self.layer_for(spec) for spec in specs]
        fresh = [(spec, layer) for spec, layer in zip(specs, layers)
                 if spec.subgraph is None and not layer.built]
        with contextlib.ExitStack() as stack:
            for spec, layer in fresh:
                if spec.source is not None:
                    stack.enter_context(_keras.zero_initializers(layer))
            try:
                model = keras.Sequential([input_layer, *layers], name=graph.graph["name"])
            except Exception as exc:
                raise RebuildError(f"Sequential model '{graph.graph['name']}' could not be "
                                   f"rebuilt: {type(exc).__name__}: {exc}") from exc
        zeroed = {id(layer) for spec, layer in fresh if spec.source is not None}
        for spec, layer in zip(specs, layers):
            if (spec.subgraph is None and isinstance(layer, keras.layers.Layer)
                    and layer.name not in self.report.layers):
                record = self.report.layers[layer.name] = transfer_weights(spec, layer)
                if id(layer) in zeroed:
                    initialize_new_weights(spec, layer, record)
        _keras.set_own_trainable(model, graph.graph.get("trainable", True))
        shapes = {input_id: [tuple(input_layer.output.shape)]}
        for node_id, layer in zip(chain, layers):
            shapes[node_id] = [tuple(t.shape) for t in keras.tree.flatten(layer.output)]
        self.shapes[id(graph)] = shapes
        return model


def _is_chain(graph) -> bool:
    """One input, one output, each call taking exactly the previous call's single output.

    (Keras records call-context kwargs such as training=False on a Sequential's own calls;
    Sequential passes those itself, so only the topology is checked.)
    """
    if len(graph.graph["inputs"]) != 1 or len(graph.graph["outputs"]) != 1:
        return False
    for node_id, data in graph.nodes(data=True):
        if data["kind"] in ("layer", "op"):
            if graph.in_degree(node_id) != 1:
                return False
        if data["kind"] != "output" and graph.out_degree(node_id) != 1:
            return False
    return True
