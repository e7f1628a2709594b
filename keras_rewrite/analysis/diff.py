"""What changed between two versions of a model, layer by layer: `diff_models(a, b)`.

Layers are matched by id: the layer's name, ``name:k`` for its k-th further call (see
`keras_rewrite.graph.schema`), and ``outer/inner`` for a layer inside a nested model (nested models
are flattened: their layers are compared one by one and their call is wired to their inside).
`keras_rewrite.to_model` keeps every name, so a model and its rewrite line up; two models
built apart match only as far as their layer names agree.

Each layer that differs gets a `LayerDiff` with one or more kinds:

===========  ==================================================================
``added``    only in `b`
``removed``  only in `a`
``moved``    its inputs changed: the layers feeding it, in argument order, once
             added and removed layers are looked through (a layer inserted
             before it or deleted before it is no move; a swap of two layers is)
``config``   another class, or config keys that differ (each key, old -> new)
``weights``  weights whose values differ (each with its largest absolute
             difference), or that were added, removed, or changed shape or dtype
===========  ==================================================================

Weights are compared by label (``kernel``, ``bias``, ``kernel#1`` for a repeated name; the
labels of the rebuild report), values as float64. A shared layer's weights are compared at
its first call only. For a graph (not a model), a layer's weights are its original layer's
with the values a pass set (`LayerSpec.weights`) over them: what the rebuild starts from.

Example:
    >>> import keras, keras_rewrite
    >>> inputs = keras.Input((4,), name="x")
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    >>> diff = keras_rewrite.diff_models(model, keras_rewrite.rewrite(model, ["l2"]))
    >>> [(layer.id, layer.kinds) for layer in diff.layers]
    [('d', ('config',))]
    >>> diff.layers[0].config[0].key
    'kernel_regularizer'
"""
from __future__ import annotations

import dataclasses
import heapq
import json
from typing import Any

__all__ = ["diff_models", "ModelDiff", "LayerDiff", "ConfigChange", "WeightChange",
           "FlatGraph", "FlatNode", "flatten", "KINDS", "MISSING"]

KINDS = ("added", "removed", "moved", "config", "weights")
MARKS = {"added": "+", "removed": "-", "moved": ">", "config": "~", "weights": "~"}


class _Missing:
    def __repr__(self):
        return "(absent)"


MISSING = _Missing()  # a config key one side does not have


# --------------------------------------------------------------------------- flattening


@dataclasses.dataclass
class FlatNode:
    """One node of a `FlatGraph`: a layer call, model input, raw op or model output."""

    id: str
    kind: str  # input | layer | op | output
    name: str
    class_name: str
    config: dict
    shape: tuple | None
    cluster: tuple  # ids of the nested model calls containing it, outermost first
    spec: Any = dataclasses.field(default=None, repr=False)  # its LayerSpec (None: output)
    first_call: bool = True  # False for a shared layer's further calls (``name:k``)


@dataclasses.dataclass
class FlatGraph:
    """A graph with nested models expanded: node ids are ``outer/inner`` paths.

    Attributes:
        name: the model's name.
        nodes: id -> `FlatNode`, in topological order (ties kept in the graph's own order).
        edges: (producer id, consumer id, slot), each consumer's edges in slot order.
        clusters: nested model call path (a tuple of ids) -> its label.
    """

    name: str
    nodes: dict
    edges: list
    clusters: dict

    def __post_init__(self):
        self._in, self._out = {}, {}
        for u, v, slot in self.edges:
            self._in.setdefault(v, []).append((slot, u))
            self._out.setdefault(u, []).append(v)
        for producers in self._in.values():
            producers.sort(key=lambda pair: pair[0])

    def producers(self, node_id) -> list:
        """The ids feeding `node_id`, in argument-slot order."""
        return [u for _, u in self._in.get(node_id, [])]

    def consumers(self, node_id) -> list:
        return list(self._out.get(node_id, []))


def flatten(graph) -> FlatGraph:
    """`graph` (made by `to_graph`, maybe edited by passes) with nested models expanded."""
    nodes, edges, clusters = {}, [], {}
    _flatten_into(nodes, edges, clusters, graph, "", ())
    order = topological_ids(list(nodes), edges)
    return FlatGraph(graph.graph.get("name", "model"), {i: nodes[i] for i in order}, edges,
                     clusters)


def _flatten_into(nodes, edges, clusters, graph, prefix: str, cluster: tuple):
    """Add `graph`'s nodes; return (entry ids by input index, exit ids by output index) so
    the caller can wire a nested model's call to its inside."""
    entries = [prefix + n for n in graph.graph.get("inputs", [])]
    exits = {}
    nested = {}  # node id -> (entries, exits) of the expanded nested model
    for node_id, data in graph.nodes(data=True):
        spec = data.get("spec")
        if spec is not None and getattr(spec, "subgraph", None) is not None:
            inner_cluster = cluster + (prefix + node_id,)
            model_class = spec.subgraph.graph.get("model_class", "Model")
            clusters[inner_cluster] = f"{spec.name} ({model_class})"
            nested[node_id] = _flatten_into(nodes, edges, clusters, spec.subgraph,
                                            f"{prefix}{node_id}/", inner_cluster)
            continue
        if data["kind"] == "output" and prefix:
            continue  # inside a nested model, its outputs are wired straight to the consumers
        shapes = data.get("output_shapes")
        nodes[prefix + node_id] = FlatNode(
            id=prefix + node_id, kind=data["kind"],
            name=spec.name if spec is not None else node_id,
            class_name=spec.class_name if spec is not None else "",
            config=dict(spec.config) if spec is not None else {},
            shape=tuple(shapes[0]) if shapes else None, cluster=cluster, spec=spec,
            first_call=spec is None or node_id == spec.name)
    for index, out_id in enumerate(graph.graph.get("outputs", [])):
        for producer, _, edge in graph.in_edges(out_id, data=True):
            exits[index] = _exit_of(prefix, producer, edge, nested)
    for producer, consumer, edge in graph.edges(data=True):
        if prefix and graph.nodes[consumer]["kind"] == "output":
            continue
        source = _exit_of(prefix, producer, edge, nested)
        slot = edge.get("slot", 0)
        if consumer in nested:
            inner_entries = nested[consumer][0]
            target = inner_entries[slot] if slot < len(inner_entries) else inner_entries[0]
            slot = 0
        else:
            target = prefix + consumer
        edges.append((source, target, slot))
    return entries, exits


def _exit_of(prefix, producer, edge, nested):
    if producer in nested:
        inner_exits = nested[producer][1]
        return inner_exits.get(edge.get("tensor_index", 0), next(iter(inner_exits.values())))
    return prefix + producer


def topological_ids(ids: list, edges: list) -> list:
    """`ids` in a topological order of `edges`, the given order breaking ties (passes append
    the nodes they create, so the graph's own order alone is not topological)."""
    rank = {node_id: i for i, node_id in enumerate(ids)}
    indegree = dict.fromkeys(ids, 0)
    out = {}
    for u, v, _ in edges:
        if u in rank and v in rank:
            indegree[v] += 1
            out.setdefault(u, []).append(v)
    ready = [rank[i] for i in ids if indegree[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node_id = ids[heapq.heappop(ready)]
        order.append(node_id)
        for v in out.get(node_id, []):
            indegree[v] -= 1
            if indegree[v] == 0:
                heapq.heappush(ready, rank[v])
    if len(order) < len(ids):  # a cycle (an invalid graph): keep the rest in given order
        seen = set(order)
        order.extend(i for i in ids if i not in seen)
    return order


# --------------------------------------------------------------------------- the diff


@dataclasses.dataclass
class ConfigChange:
    """One config key that differs; ``key == "class"`` when the layer's class changed.
    `old` or `new` is `MISSING` when that side has no such key."""

    key: str
    old: Any
    new: Any


@dataclasses.dataclass
class WeightChange:
    """One weight that differs.

    Attributes:
        name: its label (``kernel``, ``bias``, ``kernel#1``).
        change: "values" (same shape and dtype, other values), "shape", "dtype", "added" or
            "removed".
        old_shape, new_shape: its shapes (None on the side that lacks it).
        max_abs_difference: for "values", the largest ``|new - old|`` (as float64; NaN
            where exactly one side is NaN); otherwise None.
    """

    name: str
    change: str
    old_shape: tuple | None = None
    new_shape: tuple | None = None
    max_abs_difference: float | None = None

    def describe(self) -> str:
        if self.change == "values":
            return f"{self.name} max |diff| {_number(self.max_abs_difference)}"
        if self.change == "added":
            return f"{self.name} added {_shape(self.new_shape)}"
        if self.change == "removed":
            return f"{self.name} removed {_shape(self.old_shape)}"
        if self.change == "shape":
            return f"{self.name} shape {_shape(self.old_shape)} -> {_shape(self.new_shape)}"
        return f"{self.name} dtype changed"


@dataclasses.dataclass
class LayerDiff:
    """How one layer (one node id) differs; see the module docstring for the kinds.

    Attributes:
        id: the node id (``outer/inner`` inside nested models).
        name: the layer's name.
        class_name: its class in `b` (in `a` when removed).
        kinds: which of `KINDS` apply, in that order.
        old_inputs, new_inputs: the ids feeding it (looked through added/removed layers),
            in `a` and in `b`; set when moved.
        config: the `ConfigChange` list.
        weights: the `WeightChange` list.
    """

    id: str
    name: str
    class_name: str
    kinds: tuple
    old_inputs: list = dataclasses.field(default_factory=list)
    new_inputs: list = dataclasses.field(default_factory=list)
    config: list = dataclasses.field(default_factory=list)
    weights: list = dataclasses.field(default_factory=list)

    @property
    def max_abs_difference(self) -> float | None:
        """The largest difference among its weights whose values changed, or None."""
        values = [w.max_abs_difference for w in self.weights if w.change == "values"]
        return max(values, key=lambda v: (v == v, v)) if values else None

    def details(self, width: int | None = 60) -> list[str]:
        """One phrase per kind, e.g. ``config: use_bias False -> True``; values cut to
        `width` characters (None: whole)."""
        parts = []
        for kind in self.kinds:
            if kind in ("added", "removed"):
                parts.append(kind)
            elif kind == "moved":
                parts.append(f"moved: inputs {_names(self.old_inputs)} -> "
                             f"{_names(self.new_inputs)}")
            elif kind == "config":
                parts.append("config: " + ", ".join(
                    f"class {c.old} -> {c.new}" if c.key == "class" else
                    f"{c.key} {_short(c.old, width)} -> {_short(c.new, width)}"
                    for c in self.config))
            elif kind == "weights":
                parts.append("weights: " + ", ".join(w.describe() for w in self.weights))
        return parts

    def to_dict(self) -> dict:
        record = {"id": self.id, "name": self.name, "class": self.class_name,
                  "kinds": list(self.kinds)}
        if "moved" in self.kinds:
            record["inputs"] = {"old": self.old_inputs, "new": self.new_inputs}
        if self.config:
            record["config"] = [{"key": c.key, "old": _jsonable(c.old), "new": _jsonable(c.new)}
                                for c in self.config]
        if self.weights:
            record["weights"] = [
                {"name": w.name, "change": w.change,
                 "old_shape": list(w.old_shape) if w.old_shape is not None else None,
                 "new_shape": list(w.new_shape) if w.new_shape is not None else None,
                 "max_abs_difference": _jsonable(w.max_abs_difference)}
                for w in self.weights]
        return record


@dataclasses.dataclass
class ModelDiff:
    """What `diff_models` found.

    Attributes:
        old_name, new_name: the two models' names.
        layers: a `LayerDiff` per layer that differs, in the order of `b` (removed layers
            after the layer they followed in `a`).
        compared: how many layers (calls) were compared in all (both sides' union, no outputs).
        old, new: the two flattened graphs (`FlatGraph`), for drawing.
    """

    old_name: str
    new_name: str
    layers: list
    compared: int
    old: FlatGraph = dataclasses.field(repr=False)
    new: FlatGraph = dataclasses.field(repr=False)

    @property
    def identical(self) -> bool:
        return not self.layers

    def by_id(self) -> dict:
        return {layer.id: layer for layer in self.layers}

    def of_kind(self, kind: str) -> list:
        """The `LayerDiff`s of one kind (see `KINDS`)."""
        return [layer for layer in self.layers if kind in layer.kinds]

    def counts(self) -> dict:
        return {kind: len(self.of_kind(kind)) for kind in KINDS}

    def headline(self) -> str:
        """``4 of 7 layers differ (removed 1, config 3, weights 1)``, or ``identical (...)``."""
        if self.identical:
            return f"identical ({self.compared} layers compared)"
        counts = ", ".join(f"{kind} {n}" for kind, n in self.counts().items() if n)
        return f"{len(self.layers)} of {self.compared} layers differ ({counts})"

    def summary(self, old_label: str | None = None, new_label: str | None = None) -> str:
        """The headline after ``A -> B:`` (the models' names, or the labels given)."""
        return (f"{old_label or self.old_name} -> {new_label or self.new_name}: "
                f"{self.headline()}")

    def text(self, old_label: str | None = None, new_label: str | None = None, *,
             width: int | None = 60) -> str:
        """The summary, then one line per layer that differs::

            ~ conv (Conv2D)  config: use_bias False -> True; weights: bias added (4,)
            - bn (BatchNormalization)  removed

        ``+`` added, ``-`` removed, ``>`` moved, ``~`` changed. Config values longer than
        `width` characters are cut (None: never).
        """
        lines = [self.summary(old_label, new_label)]
        for layer in self.layers:
            lines.append(f"{MARKS[layer.kinds[0]]} {layer.id} ({layer.class_name})  "
                         + "; ".join(layer.details(width)))
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {"old_name": self.old_name, "new_name": self.new_name,
                "identical": self.identical, "compared": self.compared, "counts": self.counts(),
                "layers": [layer.to_dict() for layer in self.layers]}


def diff_models(a, b) -> ModelDiff:
    """Compare two models (or graphs made by `to_graph`) layer by layer.

    Args:
        a: the model before (a built Functional/Sequential model, or its graph).
        b: the model after.

    Returns:
        A `ModelDiff`: ``diff.identical``, ``diff.layers`` (a `LayerDiff` for each layer
        that was added, removed, moved, or whose config or weights changed),
        ``diff.text()`` and ``diff.to_dict()`` (JSON-ready).

    Raises:
        UnsupportedModelError: a model has no graph of layer calls (see `to_graph`).
    """
    return diff_flat(flatten(_graph_of(a)), flatten(_graph_of(b)))


def _graph_of(model_or_graph):
    import networkx as nx

    if isinstance(model_or_graph, nx.Graph):
        return model_or_graph
    from keras_rewrite.graph.schema import to_graph

    return to_graph(model_or_graph)


def diff_flat(old: FlatGraph, new: FlatGraph) -> ModelDiff:
    """`diff_models` on two flattened graphs."""
    added = {i for i, n in new.nodes.items() if i not in old.nodes and n.kind != "output"}
    removed = {i for i, n in old.nodes.items() if i not in new.nodes and n.kind != "output"}
    found = {}
    for node_id, node in new.nodes.items():
        if node.kind == "output":
            continue
        if node_id in added:
            found[node_id] = LayerDiff(node_id, node.name, node.class_name, ("added",),
                                       weights=_one_sided(node, "added"))
            continue
        was = old.nodes[node_id]
        kinds, entry = [], LayerDiff(node_id, node.name, node.class_name, ())
        old_in = _through(old, node_id, removed)
        new_in = _through(new, node_id, added)
        if old_in != new_in:
            kinds.append("moved")
            entry.old_inputs, entry.new_inputs = old_in, new_in
        entry.config = _config_changes(was, node)
        if entry.config:
            kinds.append("config")
        if node.first_call:
            entry.weights = _weight_changes(_weights_of(was.spec), _weights_of(node.spec))
            if entry.weights:
                kinds.append("weights")
        if kinds:
            entry.kinds = tuple(kinds)
            found[node_id] = entry
    for node_id in removed:
        node = old.nodes[node_id]
        found[node_id] = LayerDiff(node_id, node.name, node.class_name, ("removed",),
                                   weights=_one_sided(node, "removed"))
    compared = len([i for i, n in new.nodes.items() if n.kind != "output"]) + len(removed)
    order = merged_order(old, new)
    layers = [found[i] for i in order if i in found]
    return ModelDiff(old.name, new.name, layers, compared, old, new)


def merged_order(old: FlatGraph, new: FlatGraph) -> list:
    """The ids of `new` in order, each id only in `old` right after the nearest id before it
    in `old` that `new` has too."""
    after = {}
    anchor = None
    for node_id in old.nodes:
        if node_id in new.nodes:
            anchor = node_id
        else:
            after.setdefault(anchor, []).append(node_id)
    order = list(after.get(None, []))
    for node_id in new.nodes:
        order.append(node_id)
        order.extend(after.get(node_id, []))
    return order


def _through(flat: FlatGraph, node_id: str, skip: set) -> list:
    """The producers of `node_id`, each one in `skip` replaced by its own (recursively)."""
    result, seen = [], set()

    def visit(target):
        for producer in flat.producers(target):
            if producer in skip:
                if producer not in seen:
                    seen.add(producer)
                    visit(producer)
            else:
                result.append(producer)

    visit(node_id)
    return result


def _config_changes(was: FlatNode, node: FlatNode) -> list:
    from keras_rewrite.graph.schema import configs_equal

    if was.class_name != node.class_name:
        return [ConfigChange("class", was.class_name, node.class_name)]
    changes = []
    keys = list(was.config) + [k for k in node.config if k not in was.config]
    for key in keys:
        if key == "name":
            continue
        old, new = was.config.get(key, MISSING), node.config.get(key, MISSING)
        if old is MISSING or new is MISSING or not configs_equal(old, new):
            changes.append(ConfigChange(key, old, new))
    return changes


def _weights_of(spec) -> dict:
    """label -> value (a variable or an array) of the layer `spec` stands for."""
    if spec is None:
        return {}
    from keras_rewrite.graph.view import source_variables

    return {**source_variables(spec), **(spec.weights or {})}


def _one_sided(node: FlatNode, change: str) -> list:
    """The weights of an added or removed layer, listed with their shapes."""
    if not node.first_call:
        return []
    shape_key = "new_shape" if change == "added" else "old_shape"
    return [WeightChange(label, change, **{shape_key: tuple(value.shape)})
            for label, value in _weights_of(node.spec).items()]


def _weight_changes(old: dict, new: dict) -> list:
    if not old and not new:
        return []
    changes = []
    # Weights Keras named itself ("variable_18") differ by a process-wide number between two
    # builds of a layer; pair the leftovers by position when their counts agree.
    only_old = [label for label in old if label not in new]
    only_new = [label for label in new if label not in old]
    pairs = [(label, label) for label in new if label in old]
    if only_old and len(only_old) == len(only_new):
        pairs += list(zip(only_old, only_new))
        only_old, only_new = [], []
    for old_label, label in pairs:
        a, b = _array(old[old_label]), _array(new[label])
        if a.shape != b.shape:
            changes.append(WeightChange(label, "shape", a.shape, b.shape))
        elif a.dtype != b.dtype:
            changes.append(WeightChange(label, "dtype", a.shape, b.shape))
        elif not _same_values(a, b):
            changes.append(WeightChange(label, "values", a.shape, b.shape,
                                        _max_abs_difference(a, b)))
    changes += [WeightChange(label, "removed", old_shape=tuple(old[label].shape))
                for label in only_old]
    changes += [WeightChange(label, "added", new_shape=tuple(new[label].shape))
                for label in only_new]
    return changes


def _array(value):
    import numpy as np

    if not isinstance(value, np.ndarray):
        import keras

        value = keras.ops.convert_to_numpy(getattr(value, "value", value))
    return np.asarray(value)


def _same_values(a, b) -> bool:
    import numpy as np

    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _max_abs_difference(a, b) -> float:
    import numpy as np

    if a.dtype.kind not in "biufc" or a.size == 0:
        return float("nan") if a.size else 0.0
    with np.errstate(invalid="ignore"):
        difference = np.abs(a.astype(np.float64) - b.astype(np.float64))
    both_nan = np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64))
    difference[both_nan] = 0.0
    return float(np.max(difference))


# --------------------------------------------------------------------------- formatting


def _number(value) -> str:
    if value is None:
        return "?"
    return "0" if value == 0 else f"{value:.3g}"


def _shape(shape) -> str:
    return "?" if shape is None else str(tuple(shape)).replace(" ", "")


def _names(ids: list) -> str:
    return "[" + ", ".join(ids) + "]"


def _short(value, width: int | None) -> str:
    text = repr(value) if isinstance(value, str) else _compact(value)
    if width is not None and len(text) > width:
        text = text[:width - 1] + "…"
    return text


def _compact(value) -> str:
    """A config value in one line: a serialized Keras object as ``L2(l2=0.0001)``."""
    if (isinstance(value, dict) and "class_name" in value
            and isinstance(value.get("config"), dict)):
        inner = value["config"]
        args = ", ".join(f"{k}={_compact(v)}" for k, v in inner.items()
                         if k not in ("name", "trainable"))
        return f"{value['class_name']}({args})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_compact(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, str):
        return repr(value)
    return repr(value)


def _jsonable(value):
    """`value` as JSON can hold it (arrays as lists, other objects as their repr)."""
    if value is MISSING:
        return None
    if isinstance(value, float) and value != value:
        return "nan"
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        pass
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return repr(value)
