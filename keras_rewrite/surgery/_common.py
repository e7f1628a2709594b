"""Helpers the model-level surgeries share: finding a layer by name or nested path (inlining
the nested models on the way when asked), output nodes, dead-node pruning, and the spec of a
new layer or model."""
from __future__ import annotations

import networkx as nx

from keras_rewrite.errors import GraphError
from keras_rewrite.graph.edit import inline_model
from keras_rewrite.graph.schema import LayerSpec, fresh_name, iter_graphs, to_graph
from keras_rewrite.surgery.errors import LayerNotFoundError, SurgeryError


def _layer_nodes(g):
    return [(n, d) for n, d in g.nodes(data=True) if d["kind"] in ("layer", "op", "input")]


def _node_named(g, name):
    """The first call node of the layer `name` in graph `g` (not nested), or None."""
    if name in g and g.nodes[name].get("spec") is not None and g.nodes[name]["spec"].name == name:
        return name
    for n, d in _layer_nodes(g):
        if d["spec"].name == name:
            return n
    return None


def _chain_to(g, name):
    """[nested model node, ..., target node] leading from `g` to the layer `name`, or None."""
    node = _node_named(g, name)
    if node is not None:
        return [node]
    for n, d in _layer_nodes(g):
        sub = d["spec"].subgraph
        if sub is not None:
            rest = _chain_to(sub, name)
            if rest is not None:
                return [n, *rest]
    return None


def _known_names(graph, limit=20):
    names, stack = [], [("", graph)]
    while stack and len(names) < limit:
        prefix, g = stack.pop(0)
        for _, d in _layer_nodes(g):
            names.append(prefix + d["spec"].name)
            if d["spec"].subgraph is not None:
                stack.append((prefix + d["spec"].name + "/", d["spec"].subgraph))
    return names[:limit]


def locate(graph, name, *, inline: bool, argument: str = "name"):
    """(graph, node id) of the layer `name`: ``"layer"`` (found at any depth) or a nested path
    ``"outer/inner/layer"``. With `inline`, every nested model on the way is inlined into
    `graph` first, so the node returned is in `graph` itself."""
    if not isinstance(name, str) or not name:
        raise SurgeryError(f"expected {argument} to be a layer name or a path 'outer/inner', "
                           f"received {name!r}")
    if "/" in name:
        chain, g = [], graph
        parts = name.split("/")
        for i, part in enumerate(parts):
            node = _node_named(g, part)
            if node is None and i < len(parts) - 1 and part in graph.graph.get(
                    "surgery_inlined", ()):  # inlined by an earlier name: its layers are here
                g = graph
                continue
            if node is None or (i < len(parts) - 1 and g.nodes[node]["spec"].subgraph is None):
                where = "/".join(parts[:i]) or f"model '{graph.graph['name']}'"
                raise LayerNotFoundError(
                    f"{argument}={name!r}: {where} has no "
                    f"{'nested model' if i < len(parts) - 1 else 'layer'} '{part}'; its layers "
                    f"are {[d['spec'].name for _, d in _layer_nodes(g)][:20]}")
            chain.append(node)
            g = g.nodes[node]["spec"].subgraph if i < len(parts) - 1 else g
    else:
        chain = _chain_to(graph, name)
        if chain is None:
            raise LayerNotFoundError(f"{argument}={name!r}: model '{graph.graph['name']}' has "
                                     f"no layer '{name}'; its layers are {_known_names(graph)}")
    if not inline:
        g = graph
        for node in chain[:-1]:
            g = g.nodes[node]["spec"].subgraph
        return g, chain[-1]
    target_name = name.split("/")[-1]
    for node in chain[:-1]:
        nested = graph.nodes[node]["spec"]
        inner = nested.subgraph
        try:
            inline_model(graph, node)
        except GraphError as exc:
            raise SurgeryError(f"{argument}={name!r}: nested model '{nested.name}' cannot be "
                               f"inlined to reach '{target_name}': {exc}") from None
        graph.graph.setdefault("surgery_inlined", set()).add(nested.name)
        del inner
    node = _node_named(graph, target_name)
    if node is None:  # pragma: no cover - inline_model keeps every inner layer
        raise LayerNotFoundError(f"{argument}={name!r}: '{target_name}' not found after inlining")
    return graph, node


def single_output(g, node, name, argument):
    shapes = g.nodes[node]["output_shapes"]
    if shapes is not None and len(shapes) != 1:
        spec = g.nodes[node]["spec"]
        raise SurgeryError(f"{argument}={name!r}: layer '{spec.name}' ({spec.class_name}) has "
                           f"{len(shapes)} outputs; expected a layer with one output")
    return None if shapes is None else tuple(shapes[0])


def add_output(graph, producer, tensor_index=0, shape=None) -> int:
    """Add an output node reading `producer`; return its position in graph['outputs']."""
    position = len(graph.graph["outputs"])
    k, out_id = position, f"output:{position}"
    while out_id in graph:
        k += 1
        out_id = f"output:{k}"
    graph.add_node(out_id, kind="output", spec=None, call_args=None, index=position,
                   output_shapes=None if shape is None else [tuple(shape)], meta={})
    graph.add_edge(producer, out_id, slot=0, tensor_index=tensor_index)
    graph.graph["outputs"].append(out_id)
    return position


def clear_outputs(graph) -> None:
    for out_id in list(graph.graph["outputs"]):
        graph.remove_node(out_id)
    graph.graph["outputs"] = []


def renumber_outputs(graph) -> None:
    for i, out_id in enumerate(graph.graph["outputs"]):
        graph.nodes[out_id]["index"] = i


def prune_dead(graph) -> list[str]:
    """Remove every call node no output depends on (input nodes stay); return their names."""
    alive = set()
    for out_id in graph.graph["outputs"]:
        alive |= nx.ancestors(graph, out_id) | {out_id}
    dead = [n for n, d in graph.nodes(data=True)
            if n not in alive and d["kind"] in ("layer", "op")]
    names = sorted({graph.nodes[n]["spec"].name for n in dead})
    graph.remove_nodes_from(dead)
    return names


def new_spec(graph, obj, argument, name=None) -> LayerSpec:
    """The spec of a new layer (its own weights if built) or a new nested keras Model (its
    layers and weights), named `name` or its own name if free (else ``name_1``...)."""
    import keras

    from keras_rewrite import _keras

    if isinstance(obj, dict):
        try:
            obj = keras.saving.deserialize_keras_object(obj)
        except Exception as exc:
            raise SurgeryError(f"expected {argument} to be a layer, a model or a serialized "
                               f"layer config; received a dict that does not deserialize: "
                               f"{type(exc).__name__}: {exc}") from None
    if not isinstance(obj, keras.layers.Layer):
        raise SurgeryError(f"expected {argument} to be a keras Layer or Model, received "
                           f"{type(obj).__name__}")
    name = fresh_name(graph, name or obj.name)
    if _keras.is_graph_model(obj):
        sub = to_graph(obj)
        sub.graph["name"] = name
        return LayerSpec(name, type(obj), {"name": name, "trainable": obj.trainable}, obj, sub)
    config = obj.get_config()
    config["name"] = name
    source = original = None
    if obj.built and obj.weights:
        source, original = obj, obj.get_config()
    return LayerSpec(name, type(obj), config, source, original_config=original)


def as_list(value, argument, kind="names"):
    if isinstance(value, str):
        return [value]
    try:
        items = list(value)
    except TypeError:
        raise SurgeryError(f"expected {argument} to be a list of {kind}, received "
                           f"{type(value).__name__}") from None
    if not items:
        raise SurgeryError(f"expected {argument} to hold at least one of {kind}, received []")
    return items


__all__ = ["locate", "add_output", "clear_outputs", "prune_dead", "new_spec", "as_list",
           "single_output", "renumber_outputs", "iter_graphs"]


def set_output_structure(graph, structure) -> None:
    """Set the model's output structure from one whose leaves are positions in the current
    graph['outputs']: graph['outputs'] is reordered to Keras's flattening (dict keys sorted),
    which is the order of `model.outputs`."""
    import keras

    old = list(graph.graph["outputs"])
    ids = keras.tree.map_structure(lambda p: old[p], structure)
    flat = keras.tree.flatten(ids)
    graph.graph["outputs"] = list(flat)
    position = {out_id: i for i, out_id in enumerate(flat)}
    graph.graph["output_structure"] = keras.tree.map_structure(position.__getitem__, ids)
    renumber_outputs(graph)
