"""Small graph edits that keep a graph valid (see the schema in `keras_rewrite.graph.schema`).

Each function edits one graph in place and leaves it passing `validate`, or refuses with a
`GraphError` before touching anything, naming the node and saying what was expected and what
was received. Passes use these instead of adding and removing edges by hand, so that the edge
attributes (`slot` on the consumer side, `tensor_index` on the producer side) stay right:

- `remove_node`: drop a single-input, single-output call; its consumers take its input.
- `insert_after`: put a new single-input call on one output of a node; that output's
  consumers now take the new node's output.
- `check_linear_run`: whether calls form a linear run (`keras_rewrite.graph.view.View.replace_run`
  replaces or reorders one).
- `inline_model`: replace a nested model's call by its own calls.

What the edits rely on: a node with one input edge has exactly one tensor slot, ``Slot(0)``
(validate: every slot is filled by exactly one edge), so the edge into it always has
``slot=0``; a consumer's ``slot`` belongs to the consumer and never changes when its producer
is swapped, while ``tensor_index`` belongs to the producer and is re-read from the new one.

Shapes are the caller's business: an edit that changes what a node receives (removing a
pooling layer, moving a layer across one) must set that node's ``output_shapes`` to None, as
the schema says; these functions only set it on nodes they create.

Example:
    >>> import keras
    >>> from keras_rewrite import to_graph, validate
    >>> inputs = keras.Input((4,), name="x")
    >>> a = keras.layers.Dense(4, name="a")(inputs)
    >>> b = keras.layers.Dropout(0.5, name="drop")(a)
    >>> g = to_graph(keras.Model(inputs, keras.layers.Dense(2, name="c")(b)))
    >>> remove_node(g, "drop")
    >>> validate(g)
    >>> [u for u, _ in g.in_edges("c")]
    ['a']
"""
from __future__ import annotations

from typing import Sequence

import networkx as nx

from keras_rewrite.graph import kinds
from keras_rewrite.errors import GraphError
from keras_rewrite.graph.schema import LayerSpec, Slot, iter_graphs, slots_of

__all__ = ["remove_node", "insert_after", "check_linear_run", "inline_model",
           "inline_models_sharing_layers"]

_CALL_KINDS = kinds.CALL_KINDS


def _describe(graph, node_id) -> str:
    spec = graph.nodes[node_id].get("spec")
    return f"'{node_id}' ({spec.class_name})" if spec is not None else f"'{node_id}'"


def _require_node(graph, node_id) -> dict:
    if node_id not in graph:
        raise GraphError(f"graph '{graph.graph.get('name')}' has no node '{node_id}'")
    return graph.nodes[node_id]


def _require_call(graph, node_id, what: str) -> dict:
    data = _require_node(graph, node_id)
    if data["kind"] not in _CALL_KINDS:
        raise GraphError(f"cannot {what} node '{node_id}': expected a layer or op call, "
                         f"received a node of kind {data['kind']!r}")
    return data


def _require_single_input(graph, node_id, what: str):
    """The (producer, edge data) of a call with exactly one tensor argument, else GraphError."""
    edges = list(graph.in_edges(node_id, data=True))
    if len(edges) != 1:
        raise GraphError(f"cannot {what} {_describe(graph, node_id)}: expected a node with one "
                         f"tensor input, received {len(edges)} inputs "
                         f"({sorted(u for u, _, _ in edges)})")
    producer, _, data = edges[0]
    return producer, data


def _require_single_output(graph, node_id, what: str) -> None:
    """Refuse a node whose second (third, ...) output is used or recorded."""
    shapes = graph.nodes[node_id]["output_shapes"]
    used = sorted({d["tensor_index"] for _, _, d in graph.out_edges(node_id, data=True)})
    if (shapes is not None and len(shapes) != 1) or any(i != 0 for i in used):
        count = len(shapes) if shapes is not None else "?"
        raise GraphError(f"cannot {what} {_describe(graph, node_id)}: expected a node with one "
                         f"output, received {count} outputs (outputs in use: {used})")


def remove_node(graph: nx.MultiDiGraph, node_id) -> None:
    """Remove a single-input, single-output call; every consumer takes its input instead.

    Each consumer keeps its own ``slot``; its ``tensor_index`` becomes the one the removed
    node read from its producer. Consumers may be several, model outputs included.

    Raises:
        GraphError: `node_id` is missing, is an input/output node, or has several inputs
            or outputs. The graph is untouched then.
    """
    what = "remove"
    _require_call(graph, node_id, what)
    producer, in_edge = _require_single_input(graph, node_id, what)
    _require_single_output(graph, node_id, what)
    consumers = list(graph.out_edges(node_id, data=True))
    graph.remove_node(node_id)
    for _, consumer, edge in consumers:
        graph.add_edge(producer, consumer, **{**edge, "tensor_index": in_edge["tensor_index"]})


def insert_after(graph: nx.MultiDiGraph, node_id, spec: LayerSpec, *, tensor_index: int = 0,
                 call_args=None, output_shapes=None, meta: dict | None = None,
                 new_id: str | None = None) -> str:
    """Insert a new call of `spec` on output `tensor_index` of `node_id`; return its node id.

    Every consumer of that output (model outputs included) then reads the new node's output,
    keeping its own slot. The new node's id is ``spec.name`` (``spec.name:k`` when `spec`
    is already called elsewhere in `graph`, i.e. a shared layer).

    Args:
        graph: the graph to edit.
        node_id: the producer; any node but an output node.
        spec: the layer to call. A new layer needs a name no other layer in the graph has
            (`keras_rewrite.graph.schema.fresh_name` makes one).
        tensor_index: which output of `node_id` to insert on.
        call_args: the call's ``(args, kwargs)`` template; it must hold exactly one
            ``Slot(0)``. Default: ``((Slot(0),), {})``.
        output_shapes: the new node's output shapes if known (else None, "unknown").
        meta: initial ``meta`` dict.
        new_id: the new node's id, when the caller already knows it is free
            (`keras_rewrite.graph.view.View` does, from its index); otherwise it is found by a walk
            over the graph, O(number of nodes).

    Raises:
        GraphError: unknown or output node, a tensor index the node does not have, a name
            taken by another layer, or a call template that is not single-input.
    """
    data = _require_node(graph, node_id)
    if data["kind"] == "output":
        raise GraphError(f"cannot insert after output node '{node_id}': expected a node "
                         "whose tensor can be consumed")
    shapes = data["output_shapes"]
    if not isinstance(tensor_index, int) or tensor_index < 0 or (
            shapes is not None and tensor_index >= len(shapes)):
        raise GraphError(f"cannot insert after {_describe(graph, node_id)}: expected "
                         f"tensor_index in range({len(shapes) if shapes else '?'}), "
                         f"received {tensor_index!r}")
    if call_args is None:
        call_args = ((Slot(0),), {})
    slots = slots_of(call_args)
    if slots != [Slot(0)]:
        raise GraphError(f"cannot insert '{spec.name}': expected call_args with exactly one "
                         f"Slot(0), received {call_args!r}")
    if new_id is None:
        new_id = _node_id_for(graph, spec)
    consumers = [(v, d) for _, v, d in graph.out_edges(node_id, data=True)
                 if d["tensor_index"] == tensor_index]
    graph.add_node(new_id, kind="layer", spec=spec, call_args=call_args,
                   output_shapes=output_shapes, meta=dict(meta or {}))
    for consumer, edge in consumers:
        # Remove one matching edge per recorded consumer edge (parallel edges are possible).
        key = next(k for k, d in graph[node_id][consumer].items()
                   if d["slot"] == edge["slot"] and d["tensor_index"] == tensor_index)
        graph.remove_edge(node_id, consumer, key)
        graph.add_edge(new_id, consumer, **{**edge, "tensor_index": 0})
    graph.add_edge(node_id, new_id, slot=0, tensor_index=tensor_index)
    return new_id


def _node_id_for(graph, spec: LayerSpec) -> str:
    users = [n for g in iter_graphs(graph) for n, d in g.nodes(data=True)
             if d.get("spec") is spec]
    if not users:
        for g in iter_graphs(graph):
            for n, d in g.nodes(data=True):
                other = d.get("spec")
                if n == spec.name or (other is not None and other.name == spec.name):
                    raise GraphError(
                        f"cannot insert layer '{spec.name}': expected a name no layer in graph "
                        f"'{graph.graph.get('name')}' uses, received one that node '{n}' "
                        "already has (use keras_rewrite.graph.schema.fresh_name)")
        return spec.name
    k = 1
    while f"{spec.name}:{k}" in graph:
        k += 1
    return f"{spec.name}:{k}"


def check_linear_run(graph: nx.MultiDiGraph, run: Sequence) -> None:
    """Raise GraphError unless `run` is a linear run of single-input, single-output calls.

    A linear run: each node is a layer/op call with one tensor input and one output, each
    node after the first reads the previous node's output, and each node but the last has no
    other consumer (in particular, its tensor is not a model output). The last node's
    output may have any number of consumers.
    """
    what = "move"
    if len(set(run)) != len(run):
        raise GraphError(f"expected a run of distinct nodes, received {list(run)}")
    for i, node_id in enumerate(run):
        _require_call(graph, node_id, what)
        producer, _ = _require_single_input(graph, node_id, what)
        _require_single_output(graph, node_id, what)
        if i and producer != run[i - 1]:
            raise GraphError(f"cannot move {_describe(graph, node_id)} as part of run "
                             f"{list(run)}: expected its input to come from '{run[i - 1]}', "
                             f"received it from '{producer}'")
        if i < len(run) - 1:
            users = sorted(v for _, v in graph.out_edges(node_id))
            if len(users) != 1:
                raise GraphError(
                    f"cannot move {_describe(graph, node_id)} as part of run {list(run)}: "
                    f"expected its output to have one user ('{run[i + 1]}'), received "
                    f"{len(users)} users {users}")


def inline_model(graph: nx.MultiDiGraph, node_id) -> None:
    """Replace the call of a nested model by that model's own calls, wired in its place.

    The nested model's tensor arguments (flattened as Keras flattens a model's inputs: dict
    keys sorted) feed its input nodes' consumers; the consumers of its k-th output read the
    producer of its k-th output node. Its layers keep their names and specs (a layer shared
    with the outer graph stays one layer). Why: a Functional model saved as a graph cannot
    hold a layer shared between a nested model and the outer one (a KerasHub CausalLM's tied
    token embedding); one level with the layer called twice saves and loads.

    Raises:
        GraphError: `node_id` is not a nested-model call, the call's tensor arguments do not
            match the nested model's inputs, or a nested node id is already taken in `graph`.
            The graph is untouched then.
    """
    import keras

    what = "inline"
    data = _require_call(graph, node_id, what)
    sub = data["spec"].subgraph
    if sub is None:
        raise GraphError(f"cannot {what} {_describe(graph, node_id)}: expected a nested "
                         "Functional or Sequential model")
    args, kwargs = data["call_args"]
    slots = [x for x in keras.tree.flatten(args) if isinstance(x, Slot)]
    if (len(slots) != len(sub.graph["inputs"])
            or any(isinstance(x, Slot) for x in keras.tree.flatten(kwargs))):
        raise GraphError(f"cannot {what} {_describe(graph, node_id)}: its call passes "
                         f"{len(slots)} tensors positionally; expected the nested model's "
                         f"{len(sub.graph['inputs'])} inputs")
    inner = [n for n, d in sub.nodes(data=True) if d["kind"] in _CALL_KINDS]
    clashes = sorted(n for n in inner if n in graph
                     and graph.nodes[n].get("spec") is not sub.nodes[n]["spec"])
    if clashes:
        raise GraphError(f"cannot {what} {_describe(graph, node_id)}: node ids {clashes} are "
                         "already taken in the outer graph by other layers")
    # A further call of a layer shared with the outer graph gets the next free "name:k" id.
    new_id = {}
    for n in inner:
        k, candidate = 0, n
        while candidate in graph or candidate in new_id.values():
            k += 1
            candidate = f"{n}:{k}"
        new_id[n] = candidate
    into = {(e["slot"]): (u, e["tensor_index"]) for u, _, e in graph.in_edges(node_id, data=True)}
    feeds = {sub_input: into[slot.index] for sub_input, slot in zip(sub.graph["inputs"], slots)}

    def source(producer, tensor_index):
        return feeds[producer] if producer in feeds else (new_id[producer], tensor_index)

    for n in inner:
        graph.add_node(new_id[n], **sub.nodes[n])
    for u, v, e in sub.edges(data=True):
        if v in new_id:
            producer, index = source(u, e["tensor_index"])
            graph.add_edge(producer, new_id[v], **{**e, "tensor_index": index})
    outputs = []
    for out_id in sub.graph["outputs"]:
        ((u, _, e),) = sub.in_edges(out_id, data=True)
        outputs.append(source(u, e["tensor_index"]))
    consumers = list(graph.out_edges(node_id, data=True))
    graph.remove_node(node_id)
    for _, consumer, e in consumers:
        producer, index = outputs[e["tensor_index"]]
        graph.add_edge(producer, consumer, **{**e, "tensor_index": index})


def inline_models_sharing_layers(graph: nx.MultiDiGraph) -> list[str]:
    """Inline every nested model that shares a layer with the graph around it (see
    `inline_model`); return the names of the models inlined. Models that cannot be inlined
    are left as they are."""
    inlined = []
    changed = True
    while changed:
        changed = False
        for node_id, data in list(graph.nodes(data=True)):
            spec = data.get("spec")
            if data["kind"] != "layer" or spec is None or spec.subgraph is None:
                continue
            inner = {id(d["spec"]) for g in iter_graphs(spec.subgraph)
                     for _, d in g.nodes(data=True) if d["kind"] == "layer"}
            outer = {id(d["spec"]) for n, d in graph.nodes(data=True)
                     if d["kind"] == "layer" and n != node_id}
            if inner & outer:
                try:
                    inline_model(graph, node_id)
                except GraphError:
                    continue
                inlined.append(spec.name)
                changed = True
                break
    return inlined
