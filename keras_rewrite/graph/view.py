"""A typed view over the graph: nodes you can hold, and edits that keep the graph valid.

`View(graph)` wraps a graph of `keras_rewrite.to_graph` (nested models' graphs included) and
hands out `Node` objects: what a layer call is (`layer_class`, `config`, `weights`), where its
tensors come from (`inputs`, slot-aware) and go to (`users`), and whether its layer is called
more than once (`shared`). Edits go through the view: `replace`, `insert_after`,
`insert_before`, `remove`, `replace_run`, `replace_calls` and `set_config`. This module is
the one place that knows how shared layers, nested graphs and multi-slot inputs are stored; a
pass written on it never touches edges or specs by hand.

Semantics the edits rely on (see the schema in `keras_rewrite.graph.schema`):

- A layer is its `LayerSpec`; a shared layer's calls are several nodes holding one spec. So
  `replace` and `set_config` change the *layer*: every call of a shared layer sees the change,
  and the layer stays shared. `remove` removes one *call*.
- Weights belong to the layer too: `node.weights` reads the original layer's variables (each
  one when first read, so nothing untouched is copied) and writes go to ``spec.weights``,
  which the rebuild assigns after carrying the rest and reports as transformed.
- Shapes: an edit keeps the recorded ``output_shapes`` where they still hold and sets None
  ("unknown") where they may not; the rebuild checks every recorded shape and names the layer
  that no longer produces it.

The view keeps an index of calls per layer and of taken names, so `shared`, `fresh_name` and
the edits cost O(1) per node touched (not a walk over the model). Its own edits keep the index
right; after editing the graph by other means, make a new `View`.

Example:
    >>> import keras
    >>> from keras_rewrite import to_graph, validate
    >>> inputs = keras.Input((4,), name="x")
    >>> hidden = keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
    >>> g = to_graph(keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden)))
    >>> view = View(g)
    >>> head = view["head"]
    >>> [(n.id, i) for n, i in head.inputs], head.weights["kernel"].shape
    ([('hidden', 0)], (4, 2))
    >>> view.insert_after(view["hidden"], keras.layers.Dropout(0.5, name="drop")).id
    'drop'
    >>> [n.id for n, _ in head.inputs]
    ['drop']
    >>> validate(g)
"""
from __future__ import annotations

import collections
import itertools
import types
from typing import Iterator, Mapping, Sequence

import keras
import networkx as nx
import numpy as np

from keras_rewrite.graph import kinds
from keras_rewrite import _keras
from keras_rewrite.graph.edit import check_linear_run, insert_after as _insert_after, remove_node
from keras_rewrite.errors import GraphError
from keras_rewrite.graph.schema import LayerSpec, Slot, configs_equal, iter_graphs, topological_order

__all__ = ["View", "Node", "Weights"]

_CALL_KINDS = kinds.CALL_KINDS


class Node:
    """One node of a graph, seen through a `View`. Cheap to create; compare with ``==``.

    Attributes:
        id: the node id in its graph (``name``, ``name:k`` for a shared layer's k-th call).
        graph: the graph the node lives in (a nested model's own graph for its layers).
        view: the `View` that made it.
    """

    __slots__ = ("view", "graph", "id")

    def __init__(self, view: "View", graph: nx.MultiDiGraph, node_id):
        self.view, self.graph, self.id = view, graph, node_id

    def __eq__(self, other):
        return (isinstance(other, Node) and other.graph is self.graph
                and other.id == self.id)

    def __hash__(self):
        return hash((id(self.graph), self.id))

    def __repr__(self):
        return f"Node({self.id!r}, {self.class_name})"

    @property
    def _data(self) -> dict:
        if self.id not in self.graph:
            raise GraphError(f"node '{self.id}' is no longer in graph "
                             f"'{self.graph.graph.get('name')}' (an edit removed it)")
        return self.graph.nodes[self.id]

    @property
    def kind(self) -> str:
        """"input", "layer", "op" or "output" (see `keras_rewrite.graph.schema`)."""
        return self._data["kind"]

    @property
    def spec(self) -> LayerSpec | None:
        """The layer's `LayerSpec` (shared by every call of a shared layer); None on outputs."""
        return self._data["spec"]

    @property
    def name(self) -> str:
        """The layer's name (an output node's id for output nodes)."""
        spec = self.spec
        return spec.name if spec is not None else self.id

    @property
    def layer_class(self) -> type | None:
        spec = self.spec
        return spec.cls if spec is not None else None

    @property
    def class_name(self) -> str:
        spec = self.spec
        return spec.class_name if spec is not None else "output"

    @property
    def config(self) -> Mapping:
        """The layer's config, read only: change it with `set_config`."""
        spec = self.spec
        return types.MappingProxyType(spec.config if spec is not None else {})

    @property
    def output_shapes(self) -> list | None:
        """The shapes of the call's outputs as recorded, or None ("unknown")."""
        return self._data["output_shapes"]

    @output_shapes.setter
    def output_shapes(self, shapes):
        # The rebuild checks every recorded shape: record only what an edit keeps true.
        self._data["output_shapes"] = None if shapes is None else [tuple(s) for s in shapes]

    @property
    def meta(self) -> dict:
        return self._data["meta"]

    @property
    def is_model(self) -> bool:
        """True for the call of a nested Functional/Sequential model."""
        spec = self.spec
        return spec is not None and spec.subgraph is not None

    @property
    def inputs(self) -> list[tuple["Node", int]]:
        """``(producer, tensor_index)`` per tensor argument, in slot order."""
        edges = sorted(self.graph.in_edges(self.id, data=True), key=lambda e: e[2]["slot"])
        return [(Node(self.view, self.graph, u), d["tensor_index"]) for u, _, d in edges]

    @property
    def users(self) -> list[tuple["Node", int]]:
        """``(consumer, slot)`` per use of this node's outputs (output nodes included)."""
        return [(Node(self.view, self.graph, v), d["slot"])
                for _, v, d in self.graph.out_edges(self.id, data=True)]

    @property
    def calls(self) -> list["Node"]:
        """Every call of this node's layer, in any graph of the view (itself included)."""
        spec = self.spec
        if spec is None:
            return [self]
        return [Node(self.view, g, n) for g, n in self.view._calls.get(id(spec), ())]

    @property
    def shared(self) -> bool:
        """True when this node's layer is called more than once (anywhere in the model)."""
        spec = self.spec
        return spec is not None and len(self.view._calls.get(id(spec), ())) > 1

    @property
    def weights(self) -> "Weights":
        """The layer's weights by label (``kernel``, ``bias``, ``kernel#1``): see `Weights`."""
        return Weights(self.spec)

    @weights.setter
    def weights(self, values: Mapping):
        self.spec.weights = {label: np.asarray(v) for label, v in dict(values).items()}

    def set_config(self, **changes) -> bool:
        """Same as ``view.set_config(node, **changes)``."""
        return self.view.set_config(self, **changes)


class Weights(Mapping):
    """A layer's weights as ``{label: numpy array}``, read lazily, written to ``spec.weights``.

    Labels are those of the report (``kernel``, ``bias``, ``kernel#1`` for a repeated name).
    Reading a label returns the value a pass set for it, or else the original layer's variable
    as a NumPy array, converted only when read. Writing (``weights["kernel"] = k``) stores the
    value in ``spec.weights``: the rebuild assigns it (checking its shape against the rebuilt
    layer) and the report lists it as transformed. The layer's other weights are carried over.
    """

    def __init__(self, spec: LayerSpec):
        self._spec = spec
        self._variables = None

    def _source_variables(self) -> dict:
        if self._variables is None:
            self._variables = source_variables(self._spec)
        return self._variables

    def __getitem__(self, label):
        if self._spec.weights is not None and label in self._spec.weights:
            return self._spec.weights[label]
        variable = self._source_variables().get(label)
        if variable is None:
            raise KeyError(f"layer '{self._spec.name}' has no weight {label!r}; expected one "
                           f"of {sorted(self)}")
        return keras.ops.convert_to_numpy(variable.value)

    def __setitem__(self, label, value):
        if not isinstance(label, str):
            raise TypeError(f"expected a weight label (str); received {label!r}")
        if self._spec.weights is None:
            self._spec.weights = {}
        self._spec.weights[label] = np.asarray(value)

    def update(self, values: Mapping):
        for label, value in dict(values).items():
            self[label] = value

    def __iter__(self):
        labels = list(self._source_variables())
        labels += [k for k in (self._spec.weights or {}) if k not in labels]
        return iter(labels)

    def __len__(self):
        return sum(1 for _ in self)

    def __repr__(self):
        return f"Weights({self._spec.name!r}: {list(self)})"


def source_variables(spec: LayerSpec) -> dict:
    """``{label: variable}`` of the original layer `spec` stands for, unconverted (labels as in
    `Weights`); empty for a nested model's call or a layer a pass made."""
    source = spec.source
    if source is None or spec.subgraph is not None or not hasattr(source, "weights"):
        return {}
    return {kinds.weight_label(key): v for key, v in zip(_keras.variable_key_list(source), source.weights)}


class View:
    """A typed view over `graph` and its nested models' graphs (see the module docstring).

    Iterating yields every node in topological order; a nested model's call is followed by
    its own graph's nodes (each nested graph once). ``view[node_id]`` is a node of the outer
    graph; `layers()` yields layer calls only.
    """

    def __init__(self, graph: nx.MultiDiGraph):
        if not isinstance(graph, nx.MultiDiGraph):
            raise TypeError(f"expected the graph of keras_rewrite.to_graph (a "
                            f"networkx.MultiDiGraph); received {type(graph).__name__}")
        self.graph = graph
        self._calls: dict[int, list] = collections.defaultdict(list)  # id(spec) -> calls
        self._taken: collections.Counter = collections.Counter()  # node ids and layer names
        for g in iter_graphs(graph):
            for node_id, data in g.nodes(data=True):
                self._add_to_index(g, node_id, data.get("spec"))

    # ------------------------------------------------------------------------- reading

    def __getitem__(self, node_id) -> Node:
        if node_id not in self.graph:
            raise KeyError(f"graph '{self.graph.graph.get('name')}' has no node {node_id!r}")
        return Node(self, self.graph, node_id)

    def __iter__(self) -> Iterator[Node]:
        return self._walk(self.graph, {id(self.graph)})

    def _walk(self, graph, seen):
        for node_id in topological_order(graph):
            if node_id not in graph:  # removed by an edit made while iterating
                continue
            yield Node(self, graph, node_id)
            spec = graph.nodes[node_id]["spec"] if node_id in graph else None
            if spec is not None and spec.subgraph is not None and id(spec.subgraph) not in seen:
                seen.add(id(spec.subgraph))
                yield from self._walk(spec.subgraph, seen)

    def layers(self) -> Iterator[Node]:
        """Every layer call (nested models' included), in topological order."""
        return (node for node in self if node.kind == "layer")

    def node(self, graph, node_id) -> Node:
        """The node `node_id` of `graph` (the outer graph or a nested one)."""
        if node_id not in graph:
            raise KeyError(f"graph '{graph.graph.get('name')}' has no node {node_id!r}")
        return Node(self, graph, node_id)

    def fresh_name(self, base: str) -> str:
        """A layer name and node id unused anywhere in the view's graphs."""
        if not self._taken[base]:
            return base
        return next(f"{base}_{i}" for i in itertools.count(1) if not self._taken[f"{base}_{i}"])

    # ------------------------------------------------------------------------- editing

    def set_config(self, node: Node, **changes) -> bool:
        """Set config entries of `node`'s layer (every call of a shared layer); True if any
        value changed.

        The spec gets a new top-level dict: a config dict another spec happens to share (a
        pass that built a spec with ``spec.replace(config=spec.config)``) is never written
        through, and nested values are not copied.
        """
        spec = self._layer_spec(node, "set the config of")
        if "name" in changes and changes["name"] != spec.name:
            raise GraphError(f"cannot rename layer '{spec.name}' with set_config; expected "
                             "replace(node, spec.replace(name=...))")
        changed = {k: v for k, v in changes.items()
                   if k not in spec.config or not configs_equal(spec.config[k], v)}
        if changed:
            spec.config = {**spec.config, **changed}
        return bool(changed)

    def set_sublayer_regularizer(self, node: Node, sub_index: int, key: str, variable: str,
                                 in_cell: bool, serialized: dict) -> None:
        """Give a sub-layer of `node`'s layer a regularizer its config cannot hold
        (`LayerSpec.sublayer_regularizers`; the rebuild sets it on the new sub-layer).

        Args:
            sub_index: the sub-layer's position in ``_keras.sublayers(layer)`` (0 is the layer).
            key: the regularizer setting (``"kernel_regularizer"``).
            variable: the attribute holding the variable it applies to (``"kernel"``).
            in_cell: the sub-layer keeps its weights on ``.cell`` (a recurrent layer).
            serialized: the serialized regularizer.
        """
        spec = self._layer_spec(node, "set a sub-layer regularizer of")
        spec.sublayer_regularizers[(sub_index, key)] = (variable, in_cell, serialized)

    def replace(self, node: Node, new, weights: Mapping | None = None, *,
                name: str | None = None) -> Node:
        """Make `node`'s layer `new` (a Keras layer or a `LayerSpec`) at every call of it.

        A Keras layer stands where the old one stood: it takes the old layer's name (or
        `name`), dtype policy and trainable flag; when its class is the old layer's class, the
        old layer's weights are carried over by name where they fit, otherwise it starts
        fresh. A `LayerSpec` is used as given. `weights` (``{label: array}``) are values for
        the new layer, assigned by the rebuild and reported as transformed. Calls keep their
        node ids, arguments and recorded output shapes (the rebuild checks them).

        Returns:
            `node` (same id, new layer).

        Raises:
            GraphError: `node` is not a layer call, or `new`'s name is another layer's.
        """
        old = self._layer_spec(node, "replace")
        spec = self._spec_from(new, like=old, name=name or (None if isinstance(new, LayerSpec)
                                                            else old.name))
        if weights is not None:
            spec.weights = {**(spec.weights or {}),
                            **{k: np.asarray(v) for k, v in dict(weights).items()}}
        if spec is old:
            return node
        if spec.name != old.name and self._taken[spec.name]:
            raise GraphError(f"cannot replace layer '{old.name}' by one named '{spec.name}': "
                             "expected a name no other layer uses (view.fresh_name makes one)")
        calls = self._calls.pop(id(old), [])
        self._taken[old.name] -= 1
        self._taken[spec.name] += 1
        for g, node_id in calls:
            g.nodes[node_id]["spec"] = spec
        self._calls[id(spec)].extend(calls)
        return node

    def insert_after(self, node: Node, layer, *, tensor_index: int = 0) -> Node:
        """Call `layer` (a Keras layer or a `LayerSpec`) on output `tensor_index` of `node`;
        every user of that output (model outputs included) reads the new node instead.

        A Keras layer is a new layer (fresh weights; its name made unique if taken). Returns
        the new node; its output shape is recorded as unknown.
        """
        spec = self._spec_from(layer, like=None)
        new_id = _insert_after(node.graph, node.id, spec, tensor_index=tensor_index,
                               new_id=self._new_node_id(node.graph, spec))
        self._add_to_index(node.graph, new_id, spec)
        return Node(self, node.graph, new_id)

    def insert_before(self, node: Node, layer, *, slot: int = 0) -> Node:
        """Call `layer` on the tensor that fills `slot` of `node`; only that slot reads the
        new node (the producer's other users are left as they are). Returns the new node."""
        data = self._call_data(node, "insert before")
        edge = next(((u, k, d) for u, _, k, d in node.graph.in_edges(node.id, keys=True,
                                                                      data=True)
                     if d["slot"] == slot), None)
        if edge is None:
            raise GraphError(f"cannot insert before '{node.id}' ({data['spec'].class_name}): "
                             f"expected a slot in {sorted(s for _, s in _slots(node))}, "
                             f"received {slot!r}")
        spec = self._spec_from(layer, like=None)
        producer, key, in_edge = edge
        new_id = self._new_node_id(node.graph, spec)
        node.graph.add_node(new_id, kind="layer", spec=spec, call_args=((Slot(0),), {}),
                            output_shapes=None, meta={})
        node.graph.remove_edge(producer, node.id, key)
        node.graph.add_edge(producer, new_id, slot=0, tensor_index=in_edge["tensor_index"])
        node.graph.add_edge(new_id, node.id, slot=slot, tensor_index=0)
        self._add_to_index(node.graph, new_id, spec)
        return Node(self, node.graph, new_id)

    def remove(self, node: Node) -> None:
        """Bypass `node` (one tensor in, one out): its users read its input instead.

        Raises:
            GraphError: `node` has several inputs or outputs, or its input and output shapes
                are both known and differ (its users could not take its input); the graph is
                untouched then.
        """
        self._call_data(node, "remove")
        inputs = node.inputs
        if len(inputs) == 1:
            (producer, index), shapes = inputs[0], node.output_shapes
            before = producer.output_shapes
            if (before is not None and shapes is not None and index < len(before)
                    and len(shapes) == 1 and tuple(before[index]) != tuple(shapes[0])):
                raise GraphError(
                    f"cannot remove '{node.id}' ({node.class_name}): it turns shape "
                    f"{tuple(before[index])} into {tuple(shapes[0])}, which its users "
                    f"{[u.id for u, _ in node.users]} expect; expected a layer whose output "
                    "shape equals its input shape")
        spec = node.spec
        remove_node(node.graph, node.id)
        self._remove_from_index(node.graph, node.id, spec)

    def replace_run(self, run: Sequence[Node], replacement: Sequence) -> list[Node]:
        """Replace a linear run of calls (see `keras_rewrite.graph.edit.check_linear_run`) by a
        chain of `replacement` items, each a `Node` of the run (kept: its layer, weights and
        call), a Keras layer or a `LayerSpec` (new), or ``(layer_or_spec, weights)``.

        The run's input feeds the first item; the run's users read the last. An empty
        replacement bypasses the run. A new Keras layer named like a layer of the run of the
        same class takes that layer's place (its weights carried where they fit); other names
        are made unique. A single new item for a single-node run is `replace`. The last item
        of the chain is recorded with the run's output shapes (the rebuild checks that it
        produces them); the others' shapes become unknown. Removing calls of a shared layer
        leaves its other calls as they are (refusing that is a rule's decision). Returns the
        chain's nodes.

        Raises:
            GraphError: the run is not linear, or an item is a node outside the run (or
                listed twice).
        """
        run = list(run)
        if not run:
            raise GraphError("expected a run of at least one node; received none")
        graph = run[0].graph
        if any(n.graph is not graph for n in run):
            raise GraphError(f"expected a run inside one graph; received {run}")
        items = [_split_item(item) for item in replacement]
        if (len(run) == 1 and len(items) == 1 and not isinstance(items[0][0], Node)):
            return [self.replace(run[0], items[0][0], items[0][1])]
        ids = [n.id for n in run]
        check_linear_run(graph, ids)
        kept = [item for item, _ in items if isinstance(item, Node)]
        for item in kept:
            if item not in run:
                raise GraphError(f"cannot keep {item!r}: expected a node of the run {ids}")
        if len(set(kept)) != len(kept):
            raise GraphError(f"expected each node of the run at most once; received {kept}")
        last_shapes = run[-1].output_shapes
        producer, in_edge = next((u, d) for u, _, d in graph.in_edges(ids[0], data=True))
        users = [(v, d) for _, v, d in graph.out_edges(ids[-1], data=True)]
        by_name = {n.name: n.spec for n in run}
        for n in run:
            for u, v, k in list(graph.in_edges(n.id, keys=True)):
                graph.remove_edge(u, v, k)
            if n not in kept:
                spec = n.spec
                graph.remove_node(n.id)
                self._remove_from_index(graph, n.id, spec)
        for _, v, k in list(graph.out_edges(ids[-1], keys=True)) if ids[-1] in graph else ():
            graph.remove_edge(ids[-1], v, k)
        chain = []
        for item, weights in items:
            if isinstance(item, Node):
                if weights is not None:
                    item.weights.update(weights)
                graph.nodes[item.id]["output_shapes"] = None
                chain.append(item.id)
                continue
            like = by_name.get(getattr(item, "name", None))
            spec = self._spec_from(item, like=like if isinstance(item, keras.layers.Layer)
                                   and like is not None and type(item) is like.cls else None)
            if weights is not None:
                spec.weights = {**(spec.weights or {}),
                                **{k: np.asarray(v) for k, v in dict(weights).items()}}
            new_id = self._new_node_id(graph, spec)
            graph.add_node(new_id, kind="layer", spec=spec, call_args=((Slot(0),), {}),
                           output_shapes=None, meta={})
            self._add_to_index(graph, new_id, spec)
            chain.append(new_id)
        if chain:  # the replacement must produce what the run produced: the rebuild checks it
            graph.nodes[chain[-1]]["output_shapes"] = last_shapes
        source, source_index = producer, in_edge["tensor_index"]
        for node_id in chain:
            graph.add_edge(source, node_id, slot=0, tensor_index=source_index)
            source, source_index = node_id, 0
        for user, edge in users:
            graph.add_edge(source, user, **{**edge, "tensor_index": source_index})
        return [Node(self, graph, n) for n in chain]

    def replace_calls(self, nodes: Sequence[Node], new, inputs: Sequence, weights=None) -> Node:
        """Replace the calls `nodes` (one graph; the last one's outputs are the only ones read
        from outside) by one call of `new` (a Keras layer or a `LayerSpec`) on `inputs`
        (``(producer Node, tensor_index)``): on that tensor when there is one, on the list of
        them otherwise (as Keras merge layers take them). The last node's users read the new
        call. A Keras layer named like a removed layer of its class takes that layer's place.
        Returns the new call; its output shape is the last node's, which the rebuild checks.

        Raises:
            GraphError: the nodes are not in one graph, a node other than the last has a user
                outside `nodes`, or an input is one of `nodes`; the graph is untouched then.
        """
        nodes = list(nodes)
        graph = nodes[0].graph if nodes else None
        if not nodes or any(n.graph is not graph for n in nodes):
            raise GraphError(f"expected calls inside one graph; received {nodes}")
        for n in nodes:
            self._call_data(n, "replace")
        inside, last = set(nodes), nodes[-1]
        for n in nodes[:-1]:
            outside = sorted(u.id for u, _ in n.users if u not in inside)
            if outside:
                raise GraphError(f"cannot replace '{n.id}' with the others: expected its "
                                 f"output to be used only inside {[m.id for m in nodes]}, "
                                 f"received users {outside}")
        if not inputs or any(p in inside for p, _ in inputs):
            raise GraphError(f"expected inputs from outside {[m.id for m in nodes]}; received "
                             f"{[(p.id, i) for p, i in inputs]}")
        if not isinstance(new, (LayerSpec, keras.layers.Layer)):
            raise GraphError(f"expected a Keras layer or a LayerSpec; received {new!r} of type "
                             f"{type(new).__name__}")
        by_name = {n.name: n.spec for n in nodes}
        like = by_name.get(getattr(new, "name", None))
        shapes = last.output_shapes
        users = [(v, d) for _, v, d in graph.out_edges(last.id, data=True)]
        for n in nodes:  # first, so that the new layer may take a removed layer's name
            removed = n.spec
            graph.remove_node(n.id)
            self._remove_from_index(graph, n.id, removed)
        spec = self._spec_from(new, like=like if isinstance(new, keras.layers.Layer)
                               and like is not None and type(new) is like.cls else None)
        if weights is not None:
            spec.weights = {**(spec.weights or {}),
                            **{k: np.asarray(v) for k, v in dict(weights).items()}}
        new_id = self._new_node_id(graph, spec)
        slots = [Slot(i) for i in range(len(inputs))]
        call_args = ((slots[0],), {}) if len(slots) == 1 else ((slots,), {})
        graph.add_node(new_id, kind="layer", spec=spec, call_args=call_args,
                       output_shapes=shapes, meta={})
        self._add_to_index(graph, new_id, spec)
        for i, (producer, index) in enumerate(inputs):
            graph.add_edge(producer.id, new_id, slot=i, tensor_index=index)
        for user, edge in users:
            graph.add_edge(new_id, user, **edge)
        return Node(self, graph, new_id)

    # ------------------------------------------------------------------------- helpers

    def _layer_spec(self, node: Node, what: str) -> LayerSpec:
        data = self._call_data(node, what)
        if data["kind"] != "layer":
            raise GraphError(f"cannot {what} '{node.id}': expected a layer call, received a "
                             f"node of kind {data['kind']!r}")
        return data["spec"]

    def _call_data(self, node: Node, what: str) -> dict:
        if not isinstance(node, Node) or node.view is not self:
            raise GraphError(f"cannot {what} {node!r}: expected a Node of this view")
        data = node._data
        if data["kind"] not in _CALL_KINDS:
            raise GraphError(f"cannot {what} node '{node.id}': expected a layer or op call, "
                             f"received a node of kind {data['kind']!r}")
        return data

    def _spec_from(self, new, *, like: LayerSpec | None, name: str | None = None) -> LayerSpec:
        """A spec for `new`: a LayerSpec as given (renamed if `name`), or a Keras layer's."""
        if isinstance(new, LayerSpec):
            return new if name is None or name == new.name else new.replace(name=name)
        if not isinstance(new, keras.layers.Layer):
            raise GraphError(f"expected a Keras layer or a LayerSpec; received {new!r} of type "
                             f"{type(new).__name__}")
        config = new.get_config()
        if like is not None:
            config.update({k: like.config[k] for k in ("dtype", "trainable")
                           if k in like.config})
            name = name or like.name
        else:
            name = name or self.fresh_name(new.name)
        config["name"] = name
        source = like.source if like is not None and like.cls is type(new) else None
        return LayerSpec(name, type(new), config, source)

    def _new_node_id(self, graph, spec: LayerSpec) -> str:
        if not self._calls.get(id(spec)):
            if self._taken[spec.name]:
                raise GraphError(f"cannot add layer '{spec.name}': expected a name no layer in "
                                 f"graph '{self.graph.graph.get('name')}' uses (view.fresh_name "
                                 "makes one)")
            return spec.name
        return next(f"{spec.name}:{k}" for k in itertools.count(1)
                    if f"{spec.name}:{k}" not in graph)

    def _add_to_index(self, graph, node_id, spec) -> None:
        # Taken: every node id once per node, every layer name once while it has calls.
        self._taken[node_id] += 1
        if spec is not None:
            calls = self._calls[id(spec)]
            if not calls:
                self._taken[spec.name] += 1
            calls.append((graph, node_id))

    def _remove_from_index(self, graph, node_id, spec) -> None:
        self._taken[node_id] -= 1
        if spec is not None:
            calls = self._calls.get(id(spec), [])
            calls[:] = [c for c in calls if not (c[0] is graph and c[1] == node_id)]
            if not calls:
                self._calls.pop(id(spec), None)
                self._taken[spec.name] -= 1


def _slots(node: Node):
    return [(u, d["slot"]) for u, _, d in node.graph.in_edges(node.id, data=True)]


def _split_item(item):
    """``(layer_or_spec_or_node, weights or None)`` from a replacement item."""
    if isinstance(item, tuple) and len(item) == 2 and (item[1] is None
                                                       or isinstance(item[1], Mapping)):
        return item
    return item, None
