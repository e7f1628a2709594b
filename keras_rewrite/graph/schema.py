"""The graph a model becomes: its schema, `to_graph`, and `validate`.

Schema
======
`to_graph(model)` returns a `networkx.MultiDiGraph` (parallel edges happen: `add([x, x])`).

Graph attributes (``graph.graph``):
    name            the model's name.
    model_class     "Functional" or "Sequential": what `to_model` rebuilds.
    model_type      the model's Python class (a Functional subclass such as a KerasHub
                    backbone is rebuilt as that class, see `rebuild.rebuilder._new_model`).
    signature       nodes and edges as `to_graph` made them (see `graph_unchanged`, and
                    `wiring_changes`, which ignores a layer replaced in place).
    trainable       the model's `trainable` flag.
    dtype_policy    the name of the model's own dtype policy (`SetDtypePolicy` changes it, as
                    building under `keras.config.set_dtype_policy` would have set it).
    inputs          node ids of the "input" nodes, in the model's input order.
    outputs         node ids of the "output" nodes, in the model's output order.
    input_structure, output_structure
                    the model's nested input/output structure (list, dict, ...) with the
                    position in `inputs` / `outputs` at each leaf.
    source          the original model (read only; never modified).
    weights_must_fit
                    optional: names of the passes that promise every weight still fits
                    (`SetInputShape`, `SetDtypePolicy`); the rebuild then refuses, naming the
                    layer, a layer no pass gave new weights whose weights no longer fit,
                    instead of re-initializing it.

Node ids are strings: a layer's name for its first call in this model, ``name:k`` for its
k-th further call; an input node's id is its InputLayer's name; output nodes are ``output:i``.
Ids never clash: a further call whose ``name:k`` is taken (a layer is named so, or it is an
output node's id, as for a shared layer named ``output``) takes the next free ``name:k``; an
output node whose ``output:i`` is a layer's name becomes ``output:i_1`` (or the next free).

Node attributes:
    kind            "input" | "layer" | "op" | "output".
                    "op" is a Keras Operation that is not a Layer (`keras.ops.add(a, b)`).
    spec            a `LayerSpec`: class, config, the original layer (for its weights), and for
                    a nested Functional/Sequential model its own graph. Several call nodes of a
                    shared layer hold the *same* LayerSpec object: edit it once, it stays shared.
                    None on output nodes.
    call_args       ``(args, kwargs)`` of the call with every tensor argument replaced by a
                    `Slot(i)`; None on input and output nodes.
    output_shapes   the original model's output shape of this call, one tuple per output, or
                    None when unknown (a node a pass created, or moved so its shape changed).
    index           position in ``graph.graph["inputs"]`` / ``["outputs"]`` (input, output).
    meta            a dict for passes and analyses to annotate; not read by `to_model`.

Edge attributes (producer -> consumer):
    slot            which `Slot` of the consumer's ``call_args`` this tensor fills (0 for an
                    output node). Each slot of a node is filled by exactly one edge.
    tensor_index    which output of the producer the tensor is (layers with several outputs).

`validate(graph)` checks all of the above, recursively into nested models' graphs; every
pass's tests call it.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any, Iterator

import networkx as nx

from keras_rewrite import _keras
from keras_rewrite.errors import GraphError

NODE_KINDS = ("input", "layer", "op", "output")


@dataclasses.dataclass(frozen=True)
class Slot:
    """Placeholder for the i-th tensor argument of a call, filled by the edge with slot=i."""

    index: int


@dataclasses.dataclass(eq=False)
class LayerSpec:
    """What to re-create a layer from.

    Attributes:
        name: the layer's name (unique among the layers of one model).
        cls: the layer's Python class.
        config: its `get_config()` (a copy: passes edit it freely); ``{"name": ...}`` only
            when `get_config()` fails (then `config_error` says why).
        source: the original layer, whose weights are carried over, or None for a new layer.
        subgraph: for a nested Functional or Sequential model, its own graph.
        original_config: the config as `to_graph` read it (never edited): while `config`
            still equals it, the layer is `untouched`.
        config_error: why `get_config()` failed, or None.
        sublayer_regularizers: regularizers for kernels the config does not describe (held
            by sub-layers of a custom layer): ``{(sub-layer index in
            _keras.sublayers(layer), config key): (variable
            attribute, in_cell, serialized regularizer)}``; the rebuild sets them.
        weights: values a pass computed for this layer (pruned, folded, reshaped), as
            ``{weight label: array}`` with labels as the report names weights (``kernel``,
            ``bias``, ``kernel#1`` for a repeated name); the rebuild assigns them after
            carrying the rest, and the report lists them as transformed. None: nothing set.
    """

    name: str
    cls: type
    config: dict
    source: Any = None
    subgraph: nx.MultiDiGraph | None = None
    original_config: dict | None = dataclasses.field(default=None, repr=False)
    config_error: str | None = None
    sublayer_regularizers: dict = dataclasses.field(default_factory=dict)
    weights: dict | None = None

    @property
    def class_name(self) -> str:
        return self.cls.__name__

    @property
    def untouched(self) -> bool:
        """True while this is the original layer as it was: same class, same config.

        An untouched layer is carried over even when its class cannot re-create it from its
        config (see `keras_rewrite.rebuild.rebuilder`).
        """
        return (self.source is not None and self.subgraph is None
                and self.cls is type(self.source) and self.original_config is not None
                and configs_equal(self.config, self.original_config))

    def replace(self, **changes) -> "LayerSpec":
        """A new spec with `changes`; the config is copied, never shared."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["config"] = copy.deepcopy(self.config)
        fields["sublayer_regularizers"] = dict(self.sublayer_regularizers)
        fields["weights"] = None if self.weights is None else dict(self.weights)
        fields.update(changes)
        return LayerSpec(**fields)


def configs_equal(a, b) -> bool:
    """Deep equality of two layer configs (which may hold NumPy arrays)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(configs_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(configs_equal(x, y) for x, y in zip(a, b))
    if hasattr(a, "shape") or hasattr(b, "shape"):
        import numpy as np
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except Exception:
            return False
    try:
        return bool(a == b)
    except Exception:
        return a is b


def graph_unchanged(graph) -> bool:
    """True when `graph` (and every nested graph) is still exactly what `to_graph` made."""
    for g in iter_graphs(graph):
        if g.graph.get("signature") != _signature(g):
            return False
        for _, data in g.nodes(data=True):
            spec = data.get("spec")
            if (spec is not None and spec.subgraph is None and data["kind"] != "input"
                    and (not spec.untouched or spec.sublayer_regularizers
                         or spec.weights is not None)):
                return False
    return True


def wiring_changes(graph) -> list[str]:
    """What passes changed in the wiring of `graph` or a nested graph: nodes added or removed,
    a node called on other inputs or with other arguments. A layer replaced in place (a new
    spec on the same node, called the same way) is not a wiring change."""
    changes = []
    for g in iter_graphs(graph):
        recorded = g.graph.get("signature")
        if recorded is None:
            continue
        (old_nodes, old_edges, old_in, old_out), (new_nodes, new_edges, new_in, new_out) = \
            recorded, _signature(g)
        old_calls = {n: args for n, _, args in old_nodes}
        new_calls = {n: args for n, _, args in new_nodes}
        where = f"in '{g.graph['name']}'"
        changes += [f"'{n}' added {where}" for n in new_calls if n not in old_calls]
        changes += [f"'{n}' removed {where}" for n in old_calls if n not in new_calls]
        inputs_of = lambda edges, node: sorted((u, s, t) for u, v, s, t in edges if v == node)
        changes += [f"'{n}' rewired {where}" for n in new_calls
                    if n in old_calls and (old_calls[n] != new_calls[n]
                                           or inputs_of(old_edges, n) != inputs_of(new_edges, n))]
        if (old_in, old_out) != (new_in, new_out):
            changes.append(f"the inputs or outputs {where}")
    return changes


def _signature(graph):
    nodes = tuple((n, id(d.get("spec")), repr(d.get("call_args"))) for n, d in graph.nodes(data=True))
    edges = frozenset((u, v, d["slot"], d["tensor_index"]) for u, v, d in graph.edges(data=True))
    return nodes, edges, tuple(graph.graph["inputs"]), tuple(graph.graph["outputs"])


def map_structure(structure, fn):
    """Apply `fn` to every leaf of nested lists, tuples and dicts; keep the containers.

    The one walker for call arguments and input/output structures (to_graph and to_model).
    """
    if isinstance(structure, (list, tuple)):
        items = [map_structure(x, fn) for x in structure]
        if hasattr(structure, "_fields"):  # a namedtuple takes its fields positionally
            return type(structure)(*items)
        return type(structure)(items)
    if isinstance(structure, dict):
        return {k: map_structure(v, fn) for k, v in structure.items()}
    return fn(structure)


def _replace_tensors(structure, tensors):
    """Replace each KerasTensor in a nested args structure by a Slot; collect them in order.

    Other leaves are copied when mutable (a NumPy constant passed to a call): a pass editing
    it in the graph must not change the original model, which still holds the original.
    """
    def to_slot(x):
        if isinstance(x, _keras.KerasTensor):
            tensors.append(x)
            return Slot(len(tensors) - 1)
        if hasattr(x, "__array__") and hasattr(x, "copy") and not hasattr(x, "_keras_history"):
            return x.copy()
        return x

    return map_structure(structure, to_slot)


def _index_structure(structure, tensors):
    """Like `_replace_tensors` for input/output structures: leaves become positions.

    Positions follow Keras's own flattening (`keras.tree.flatten`: dict keys sorted), which
    is the order of `model.inputs` / `model.outputs`; the structure keeps the user's key order.
    """
    flat = _keras.keras.tree.flatten(structure)
    tensors.extend(flat)
    counter = iter(range(len(flat)))
    positions = _positions(structure, counter)
    if next(counter, None) is not None:  # a leaf kind keras.tree walks otherwise: its own
        return _keras.keras.tree.pack_sequence_as(structure, list(range(len(flat))))
    return positions


def _positions(structure, counter):
    """`structure` with its leaves numbered in `keras.tree.flatten`'s order (dict keys sorted),
    each dict keeping its own key order. (Keras's `pack_sequence_as` sorts the keys of the
    dicts it makes on torch, so a model rebuilt from it would list its outputs in another
    order in its config.)"""
    if isinstance(structure, dict):
        numbered = {k: _positions(structure[k], counter) for k in sorted(structure)}
        return {k: numbered[k] for k in structure}
    if isinstance(structure, (list, tuple)):
        items = [_positions(x, counter) for x in structure]
        return type(structure)(*items) if hasattr(structure, "_fields") else type(structure)(items)
    return next(counter)


def to_graph(model) -> nx.MultiDiGraph:
    """Turn a built Functional or Sequential Keras model into a graph (see the module schema).

    Only this model's own calls are walked: calls of the same layers made from other models
    are ignored. Nested Functional/Sequential models become a call node whose
    ``spec.subgraph`` is their own graph. The model is read, never modified.

    Example:
        >>> import keras
        >>> inputs = keras.Input((4,), name="x")
        >>> model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
        >>> g = to_graph(model)
        >>> sorted(g.nodes)
        ['d', 'output:0', 'x']
        >>> g.nodes["d"]["spec"].class_name
        'Dense'
    """
    return _GraphBuilder().build(model)


class _GraphBuilder:
    def __init__(self):
        self.specs: dict[int, LayerSpec] = {}  # id(layer) -> spec, shared across nesting

    def spec_for(self, operation) -> LayerSpec:
        spec = self.specs.get(id(operation))
        if spec is None:
            subgraph = config_error = None
            if _keras.is_graph_model(operation):
                subgraph = self.build(operation)
                config = {"name": operation.name, "trainable": operation.trainable}
                original = None
            else:
                try:
                    original = operation.get_config()
                except Exception as exc:  # e.g. KerasHub's LlamaTransformerDecoder
                    original = {"name": operation.name}
                    config_error = f"get_config() fails ({type(exc).__name__}: {exc})"
                config = copy.deepcopy(original)
            spec = LayerSpec(operation.name, type(operation), config, operation, subgraph,
                             original_config=original, config_error=config_error)
            self.specs[id(operation)] = spec
        return spec

    def build(self, model) -> nx.MultiDiGraph:
        functional = _keras.functional_of(model)
        graph = nx.MultiDiGraph(
            name=model.name,
            model_class="Sequential" if isinstance(model, _keras.keras.Sequential) else "Functional",
            model_type=type(model),
            trainable=model.trainable,
            dtype_policy=model.dtype_policy.name,
            source=model,
        )
        input_tensors, output_tensors = [], []
        graph.graph["input_structure"] = _index_structure(
            _keras.input_structure(functional), input_tensors)
        graph.graph["output_structure"] = _index_structure(
            _keras.output_structure(functional), output_tensors)
        knodes = list(_keras.nodes_in_order(functional))
        # Ids must not clash (see the module docstring): layer names come first, then
        # output nodes, then further calls.
        names = {knode.operation.name for knode in knodes}
        output_ids = [_free_id(f"output:{i}", names) for i in range(len(output_tensors))]
        reserved = names.union(output_ids)
        node_ids = {}  # id(keras node) -> graph node id
        calls = {}  # id(operation) -> number of calls seen
        for knode in knodes:
            operation = knode.operation
            count = calls.get(id(operation), 0)
            calls[id(operation)] = count + 1
            node_id = operation.name
            if count:
                k = count
                while f"{operation.name}:{k}" in reserved or f"{operation.name}:{k}" in graph:
                    k += 1
                node_id = f"{operation.name}:{k}"
            node_ids[id(knode)] = node_id
            shapes = [tuple(t.shape) for t in _keras.node_outputs(knode)]
            if knode.is_input:
                graph.add_node(node_id, kind="input", spec=self.spec_for(operation),
                               call_args=None, output_shapes=shapes, meta={})
                continue
            tensors = []
            args, kwargs = _keras.node_arguments(knode)
            call_args = (_replace_tensors(args, tensors), _replace_tensors(kwargs, tensors))
            kind = "layer" if isinstance(operation, _keras.Layer) else "op"
            graph.add_node(node_id, kind=kind, spec=self.spec_for(operation),
                           call_args=call_args, output_shapes=shapes, meta={})
            for slot, tensor in enumerate(tensors):
                producer, tensor_index = _keras.producer_of(tensor)
                graph.add_edge(node_ids[id(producer)], node_id, slot=slot,
                               tensor_index=tensor_index)

        graph.graph["inputs"] = []
        for i, tensor in enumerate(input_tensors):
            producer, _ = _keras.producer_of(tensor)
            node_id = node_ids[id(producer)]
            graph.nodes[node_id]["index"] = i
            graph.graph["inputs"].append(node_id)
        graph.graph["outputs"] = []
        for i, tensor in enumerate(output_tensors):
            producer, tensor_index = _keras.producer_of(tensor)
            out_id = output_ids[i]
            graph.add_node(out_id, kind="output", spec=None, call_args=None, index=i,
                           output_shapes=[tuple(tensor.shape)], meta={})
            graph.add_edge(node_ids[id(producer)], out_id, slot=0, tensor_index=tensor_index)
            graph.graph["outputs"].append(out_id)
        graph.graph["signature"] = _signature(graph)
        return graph


def _free_id(node_id: str, taken) -> str:
    """`node_id`, or if taken `node_id_1`, `node_id_2`, ... whichever is free first."""
    if node_id not in taken:
        return node_id
    return next(f"{node_id}_{j}" for j in itertools.count(1) if f"{node_id}_{j}" not in taken)


# --------------------------------------------------------------------------- helpers for passes


def slots_of(call_args) -> list[Slot]:
    """Every Slot in a call's (args, kwargs) template, in no particular order."""
    found = []
    map_structure(call_args, lambda x: found.append(x) if isinstance(x, Slot) else None)
    return found


def iter_graphs(graph: nx.MultiDiGraph) -> Iterator[nx.MultiDiGraph]:
    """`graph` and, depth first, every nested model's graph (each once, even if shared)."""
    seen = set()
    stack = [graph]
    while stack:
        g = stack.pop()
        if id(g) in seen:
            continue
        seen.add(id(g))
        yield g
        for _, data in g.nodes(data=True):
            spec = data.get("spec")
            if spec is not None and spec.subgraph is not None:
                stack.append(spec.subgraph)


def iter_layer_nodes(graph: nx.MultiDiGraph):
    """(graph, node_id, data) for every layer call node, nested models' included."""
    for g in iter_graphs(graph):
        for node_id in topological_order(g):
            data = g.nodes[node_id]
            if data["kind"] == "layer":
                yield g, node_id, data


def topological_order(graph: nx.MultiDiGraph) -> list:
    """Node ids, producers first; ties keep insertion order (so results are reproducible)."""
    position = {n: i for i, n in enumerate(graph.nodes)}
    return list(nx.lexicographical_topological_sort(graph, key=position.__getitem__))


def single_input_edge(graph, node_id):
    """The (producer, edge data) of a node with exactly one tensor argument, else None."""
    edges = list(graph.in_edges(node_id, data=True))
    if len(edges) != 1:
        return None
    producer, _, data = edges[0]
    return producer, data


def fresh_name(graph: nx.MultiDiGraph, base: str) -> str:
    """A layer name and node id unused anywhere in `graph` (nested graphs included)."""
    taken = set()
    for g in iter_graphs(graph):
        taken.update(g.nodes)
        taken.update(d["spec"].name for _, d in g.nodes(data=True) if d.get("spec") is not None)
    if base not in taken:
        return base
    for i in itertools.count(1):
        candidate = f"{base}_{i}"
        if candidate not in taken:
            return candidate


# --------------------------------------------------------------------------------- validation


def validate(graph: nx.MultiDiGraph) -> None:
    """Check `graph` against the schema in this module's docstring; raise GraphError if not.

    Checked: node kinds and their attributes; acyclicity; input nodes have no producers and
    output nodes exactly one; every Slot of a call filled by exactly one edge and no edge
    without a Slot; tensor indices within the producer's outputs where known; one LayerSpec
    per layer name; the graph's input/output lists; the same, recursively, for nested models.
    """
    for g in iter_graphs(graph):
        _validate_one(g)


def _fail(graph, message):
    raise GraphError(f"graph '{graph.graph.get('name')}': {message}")


def _validate_one(graph: nx.MultiDiGraph) -> None:
    for key in ("name", "model_class", "inputs", "outputs", "input_structure", "output_structure"):
        if key not in graph.graph:
            _fail(graph, f"missing graph attribute '{key}'")
    if not isinstance(graph.graph["name"], str) or not graph.graph["name"]:
        _fail(graph, f"the model name must be a non-empty str; received "
                     f"{graph.graph['name']!r} of type {type(graph.graph['name']).__name__}")
    for key, listed in (("input_structure", "inputs"), ("output_structure", "outputs")):
        leaves = _keras.keras.tree.flatten(graph.graph[key])
        if (not all(isinstance(leaf, int) for leaf in leaves)
                or sorted(leaves) != list(range(len(graph.graph[listed])))):
            _fail(graph, f"graph['{key}'] holds positions {leaves}; expected each of "
                         f"0..{len(graph.graph[listed]) - 1} once, one per graph['{listed}']")
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        _fail(graph, f"has a cycle through {[edge[0] for edge in cycle]}; expected a DAG")
    names = {}
    for node_id, data in graph.nodes(data=True):
        kind = data.get("kind")
        if kind not in NODE_KINDS:
            _fail(graph, f"node '{node_id}' has kind={kind!r}; expected one of {NODE_KINDS}")
        for attr in ("spec", "call_args", "output_shapes", "meta"):
            if attr not in data:
                _fail(graph, f"node '{node_id}' has no '{attr}' attribute")
        in_edges = list(graph.in_edges(node_id, data=True))
        if kind == "input":
            if in_edges:
                _fail(graph, f"input node '{node_id}' has producers {[e[0] for e in in_edges]}")
        elif kind == "output":
            if len(in_edges) != 1 or graph.out_degree(node_id):
                _fail(graph, f"output node '{node_id}' must have one producer and no consumers; "
                      f"received {len(in_edges)} producers, {graph.out_degree(node_id)} consumers")
        else:
            expected = sorted(s.index for s in slots_of(data["call_args"]))
            received = sorted(e[2].get("slot") for e in in_edges)
            if expected != list(range(len(expected))) or received != expected:
                _fail(graph, f"node '{node_id}' ({data['spec'].class_name}) takes tensor slots "
                      f"{expected} but its incoming edges fill {received}")
        spec = data["spec"]
        if kind != "output":
            if not isinstance(spec, LayerSpec):
                _fail(graph, f"node '{node_id}' has spec={spec!r}; expected a LayerSpec")
            other = names.setdefault(spec.name, spec)
            if other is not spec:
                _fail(graph, f"two different layers are named '{spec.name}'; names must be unique")
        for producer, _, edge in in_edges:
            index = edge.get("tensor_index")
            shapes = graph.nodes[producer]["output_shapes"]
            if not isinstance(index, int) or (shapes is not None and index >= len(shapes)):
                _fail(graph, f"edge {producer} -> {node_id} takes output {index!r} of "
                      f"'{producer}', which has {len(shapes) if shapes else '?'} outputs")
    for key, kind in (("inputs", "input"), ("outputs", "output")):
        listed = graph.graph[key]
        actual = [n for n, d in graph.nodes(data=True) if d["kind"] == kind]
        if sorted(listed) != sorted(actual):
            _fail(graph, f"graph['{key}'] lists {listed} but the {kind} nodes are {actual}")
