"""What a picture shows: boxes (one per layer call, or a run of unchanged ones), edges and
clusters, built from a graph (`draw_graph`) or a diff (`draw_diff`), then laid out."""
from __future__ import annotations

import dataclasses

from keras_rewrite.analysis.picture.layout import _cluster_rects, _layout
from keras_rewrite.analysis.picture.style import (COLORS, CSS_CLASSES, HEADER_DIFF, HEADER_PLAIN,
                                                  LEGEND_WIDTH, MARGIN)
from keras_rewrite.errors import RewriteError

__all__ = ["draw_diff", "draw_graph", "Drawing", "Box", "Edge", "PictureError"]


class PictureError(RewriteError, OSError):
    """The picture could not be written (folder missing, suffix not drawable)."""

    def __str__(self):
        return self.args[0]


@dataclasses.dataclass
class Box:
    """One box of a drawing.

    Attributes:
        key: its element id in the SVG (``n0``, ``n1``, ...).
        ids: the node ids it stands for (several for a collapsed run).
        role: "layer", "input", "output", "run" (collapsed unchanged layers).
        kinds: its kinds of change (`keras_rewrite.analysis.diff.KINDS`); () when unchanged.
        lines: its label, one string per line (the first in bold).
        tooltip: the full description (SVG ``<title>``).
        cluster: ids of the nested model calls containing it.
    """

    key: str
    ids: list
    role: str
    kinds: tuple
    lines: list
    tooltip: str
    cluster: tuple = ()
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    @property
    def css_class(self) -> str:
        if self.role == "run":
            return "node run"
        if not self.kinds:
            return f"node unchanged {self.role}" if self.role != "layer" else "node unchanged"
        return "node " + " ".join(CSS_CLASSES[k] for k in self.kinds)

    @property
    def fill(self) -> str:
        if self.role == "run":
            return COLORS["run"]
        for kind in ("added", "removed", "config", "weights", "moved"):
            if kind in self.kinds:
                return COLORS[kind]
        return COLORS["io"] if self.role in ("input", "output") else COLORS["unchanged"]


@dataclasses.dataclass
class Edge:
    source: str  # box keys
    target: str
    removed: bool  # an edge of the old graph only (to or from a removed layer)
    points: list = dataclasses.field(default_factory=list)  # (x, y) from source to target


@dataclasses.dataclass
class Drawing:
    """A laid-out picture: boxes with positions, routed edges, clusters, legend, changes."""

    title: str
    summary: str
    boxes: list
    edges: list
    clusters: list  # (label, x, y, w, h)
    width: float
    height: float
    changes: list  # (box key, LayerDiff) in order, for the HTML list
    is_diff: bool

    def box_of(self, node_id: str) -> Box | None:
        for box in self.boxes:
            if node_id in box.ids:
                return box
        return None


# --------------------------------------------------------------------------- building


def draw_graph(graph, *, title: str | None = None) -> Drawing:
    """A drawing of one graph (made by `to_graph`): every layer call, nothing collapsed."""
    from keras_rewrite.analysis.diff import flatten

    flat = flatten(graph)
    edges = [(u, v, False) for u, v, _ in flat.edges]
    name = title or flat.name
    layer_count = sum(1 for n in flat.nodes.values() if n.kind in ("layer", "op"))
    return _build(list(flat.nodes), flat.nodes, {}, edges, flat.clusters, name,
                  f"{flat.name}: {layer_count} layer calls", collapse=False, is_diff=False)


def draw_diff(diff, *, title: str | None = None, collapse: bool = True,
              old_label: str | None = None, new_label: str | None = None) -> Drawing:
    """A drawing of `diff` (a `keras_rewrite.analysis.diff.ModelDiff`): the new graph with its
    removed layers put back (dashed), each box marked with its kinds of change; with
    `collapse`, runs of two or more unchanged layers become one box."""
    from keras_rewrite.analysis.diff import merged_order

    old, new = diff.old, diff.new
    order = merged_order(old, new)
    nodes = {**{i: old.nodes[i] for i in order if i not in new.nodes}, **new.nodes}
    found = diff.by_id()
    edges = [(u, v, False) for u, v, _ in new.edges]
    edges += [(u, v, True) for u, v, _ in old.edges
              if (u not in new.nodes or v not in new.nodes) and u in nodes and v in nodes]
    clusters = {**old.clusters, **new.clusters}
    summary = diff.headline() if title else diff.summary(old_label, new_label)
    return _build(order, nodes, found, edges, clusters, title or summary, summary,
                  collapse=collapse, is_diff=True)


def _build(order, nodes, found, edges, clusters, title, summary, *, collapse, is_diff):
    order = [i for i in order if i in nodes]
    order, edges = _acyclic_order(order, edges)
    groups = _groups(order, nodes, found, collapse)
    boxes, box_of = [], {}
    for index, group in enumerate(groups):
        box = _box(f"n{index}", group, nodes, found)
        boxes.append(box)
        for node_id in group:
            box_of[node_id] = box.key
    box_edges, seen = [], {}
    for u, v, removed in edges:
        a, b = box_of[u], box_of[v]
        if a == b:
            continue
        if (a, b) in seen:  # parallel edges (add([x, x])) are drawn once; solid wins
            seen[(a, b)].removed = seen[(a, b)].removed and removed
            continue
        seen[(a, b)] = Edge(a, b, removed)
        box_edges.append(seen[(a, b)])
    _layout(boxes, box_edges, HEADER_DIFF if is_diff else HEADER_PLAIN)
    cluster_rects = _cluster_rects(boxes, clusters)
    width = max([b.x + b.w for b in boxes] + [r[1] + r[3] for r in cluster_rects]
                + [len(title) * 9 + MARGIN, len(summary) * 7.5 + MARGIN,
                   LEGEND_WIDTH if is_diff else 300])
    height = max([b.y + b.h for b in boxes] + [r[2] + r[4] for r in cluster_rects] + [100])
    changes = []
    for box in boxes:
        for node_id in box.ids:
            if node_id in found:
                changes.append((box.key, found[node_id]))
    return Drawing(title, summary, boxes, box_edges, cluster_rects, width + MARGIN,
                   height + MARGIN, changes, is_diff)


def _acyclic_order(order, edges):
    """A topological order of all `edges` (given order breaking ties); if the old graph's
    edges to removed layers close a cycle (layers swapped), those edges are dropped."""
    from keras_rewrite.analysis.diff import topological_ids

    full = topological_ids(order, [(u, v, 0) for u, v, _ in edges])
    position = {node_id: i for i, node_id in enumerate(full)}
    if all(position[u] < position[v] for u, v, _ in edges):
        return full, edges
    solid = topological_ids(order, [(u, v, 0) for u, v, removed in edges if not removed])
    position = {node_id: i for i, node_id in enumerate(solid)}
    return solid, [(u, v, r) for u, v, r in edges if position[u] < position[v]]


def _groups(order, nodes, found, collapse):
    """`order` cut into boxes: one node each, or a run of consecutive unchanged layers."""
    groups, run = [], []

    def flush():
        if len(run) >= 2:
            groups.append(list(run))
        else:
            groups.extend([node_id] for node_id in run)
        run.clear()

    for node_id in order:
        node = nodes[node_id]
        collapsible = collapse and node.kind in ("layer", "op") and node_id not in found
        if collapsible and run and nodes[run[-1]].cluster != node.cluster:
            flush()
        if collapsible:
            run.append(node_id)
            continue
        flush()
        groups.append([node_id])
    flush()
    return groups


def _box(key, group, nodes, found) -> Box:
    if len(group) > 1:
        names = [nodes[i].id for i in group]
        listed = "\n".join(names[:60]) + (f"\n... and {len(names) - 60} more"
                                          if len(names) > 60 else "")
        second = f"{names[0]} … {names[-1]}" if len(group) > 2 else f"{names[0]}, {names[1]}"
        return Box(key, list(group), "run", (), [f"{len(group)} unchanged layers", second],
                   f"{len(group)} unchanged layers:\n{listed}", nodes[group[0]].cluster)
    node = nodes[group[0]]
    change = found.get(node.id)
    shape = "" if node.shape is None else " " + str(tuple(node.shape)).replace(" ", "")
    if node.kind == "input":
        lines, role = [node.name, f"Input{shape}"], "input"
    elif node.kind == "output":
        lines, role = [node.id, f"output{shape}"], "output"
    else:
        lines, role = [node.name, f"{node.class_name}{shape}"], "layer"
    tooltip = [f"{node.id} ({node.class_name or node.kind}){shape}"]
    kinds = ()
    if change is not None:
        kinds = change.kinds
        lines.append(_change_line(change))
        tooltip += change.details(width=200)
    return Box(key, [node.id], role, kinds, lines, "\n".join(tooltip), node.cluster)


def _change_line(change) -> str:
    parts = []
    for kind in change.kinds:
        if kind in ("added", "removed"):
            parts.append(kind)
        elif kind == "moved":
            parts.append("moved, was after " + (", ".join(change.old_inputs) or "nothing"))
        elif kind == "config":
            parts.append("config: " + ", ".join(c.key for c in change.config))
        elif kind == "weights":
            parts.append("weights: " + ", ".join(_weight_token(w) for w in change.weights))
    return "; ".join(parts)


def _weight_token(weight) -> str:
    if weight.change == "values":
        return f"{weight.name} Δ{weight.max_abs_difference:.2g}"
    if weight.change in ("added", "removed"):
        return ("+" if weight.change == "added" else "−") + weight.name
    return f"{weight.name} {weight.change}"


