"""Draw a model graph (see `keras_rewrite.graph`) as Graphviz DOT, optionally as a diff.

`to_dot(graph)` draws one graph: a box per layer call (name, class, output shape), an oval
per model input and output, nested models as labelled clusters. `to_dot(after, before=...)`
draws `after` and marks what differs from `before` (`diff_graphs`):

========  =====================================================================
new       a node of `after` missing from `before`: green fill, "(new)"
changed   same node, other class or config: amber fill, "(changed: keys...)"
moved     its producers *and* its consumers changed (it changed place in a
          chain, not just got a new neighbour): blue fill, "(moved)", and a
          dashed gray edge from each producer it had before ("was here")
removed   a node of `before` missing from `after`: dashed gray, "(removed)",
          with its old edges dashed
========  =====================================================================

Nodes are matched by id (the layer name), which `to_model` keeps when it rebuilds. The DOT
text is written by this module (no pydot/pygraphviz); `write_picture` renders it with
Graphviz's ``dot`` when that is on PATH, and otherwise writes the ``.dot`` file and says how
to render it.

Example:
    >>> import networkx as nx
    >>> from keras_rewrite.graph import LayerSpec
    >>> g = nx.MultiDiGraph(name="m", inputs=["x"], outputs=["output:0"])
    >>> g.add_node("x", kind="input", spec=LayerSpec("x", object, {}), output_shapes=[(None, 4)])
    >>> g.add_node("d", kind="layer", spec=LayerSpec("d", object, {}), output_shapes=None)
    >>> g.add_node("output:0", kind="output", spec=None, output_shapes=[(None, 2)])
    >>> _ = g.add_edge("x", "d"), g.add_edge("d", "output:0")
    >>> print(to_dot(g).splitlines()[0])
    digraph "m" {
    >>> '"x" -> "d";' in to_dot(g)
    True
"""
from __future__ import annotations

import dataclasses
import pathlib
import shutil
import subprocess

from .errors import RewriteError

__all__ = ["to_dot", "diff_graphs", "GraphDiff", "write_picture", "PictureError", "quote"]

COLORS = {"new": "#b7e4a7", "changed": "#ffd97a", "moved": "#a9cdf5"}
REMOVED_COLOR = "gray55"
FONT = "Helvetica"


class PictureError(RewriteError, OSError):
    """The picture could not be written or rendered."""

    def __str__(self):
        return self.args[0]


@dataclasses.dataclass
class _Node:
    id: str
    kind: str  # input | layer | op | output
    name: str
    class_name: str
    config: dict
    shape: tuple | None
    cluster: tuple  # names of the nested models containing it, outermost first


@dataclasses.dataclass
class _Flat:
    """A graph with nested models expanded: node ids are ``outer/inner`` paths."""

    name: str
    nodes: dict  # id -> _Node, in drawing order
    edges: list  # (producer id, consumer id)
    clusters: dict  # cluster path tuple -> label

    def producers(self, node_id) -> set:
        return {u for u, v in self.edges if v == node_id}

    def consumers(self, node_id) -> set:
        return {v for u, v in self.edges if u == node_id}


def _flatten(graph) -> _Flat:
    flat = _Flat(graph.graph.get("name", "model"), {}, [], {})
    _flatten_into(flat, graph, "", ())
    return flat


def _flatten_into(flat: _Flat, graph, prefix: str, cluster: tuple):
    """Add `graph`'s nodes to `flat`; return (entry ids by input index, exit ids by output
    index) so the caller can wire a nested model's call to its inside."""
    entries = [prefix + n for n in graph.graph.get("inputs", [])]
    exits = {}
    nested = {}  # node id -> (entries, exits) of the expanded nested model
    for node_id, data in graph.nodes(data=True):
        spec = data.get("spec")
        if spec is not None and getattr(spec, "subgraph", None) is not None:
            inner_cluster = cluster + (prefix + node_id,)
            model_class = spec.subgraph.graph.get("model_class", "Model")
            flat.clusters[inner_cluster] = f"{spec.name} ({model_class})"
            nested[node_id] = _flatten_into(flat, spec.subgraph, f"{prefix}{node_id}/",
                                            inner_cluster)
            continue
        if data["kind"] == "output" and prefix:
            continue  # inside a nested model, its outputs are wired straight to the consumers
        shapes = data.get("output_shapes")
        flat.nodes[prefix + node_id] = _Node(
            id=prefix + node_id, kind=data["kind"],
            name=spec.name if spec is not None else node_id,
            class_name=spec.class_name if spec is not None else "",
            config=dict(spec.config) if spec is not None else {},
            shape=tuple(shapes[0]) if shapes else None, cluster=cluster)
    for index, out_id in enumerate(graph.graph.get("outputs", [])):
        for producer, _, edge in graph.in_edges(out_id, data=True):
            exits[index] = _exit_of(prefix, producer, edge, nested)
    for producer, consumer, edge in graph.edges(data=True):
        if prefix and graph.nodes[consumer]["kind"] == "output":
            continue
        source = _exit_of(prefix, producer, edge, nested)
        if consumer in nested:
            inner_entries = nested[consumer][0]
            slot = edge.get("slot", 0)
            target = inner_entries[slot] if slot < len(inner_entries) else inner_entries[0]
        else:
            target = prefix + consumer
        flat.edges.append((source, target))
    return entries, exits


def _exit_of(prefix, producer, edge, nested):
    if producer in nested:
        inner_exits = nested[producer][1]
        return inner_exits.get(edge.get("tensor_index", 0), next(iter(inner_exits.values())))
    return prefix + producer


# --------------------------------------------------------------------------- diff


@dataclasses.dataclass
class GraphDiff:
    """What differs between two graphs of the same model, by node id (see module docstring).

    Attributes:
        new: ids only in the new graph.
        removed: ids only in the old graph.
        changed: id -> names of the config keys that differ ("class" if the class did).
        moved: id -> producers it had in the old graph and no longer has.
    """

    new: set = dataclasses.field(default_factory=set)
    removed: set = dataclasses.field(default_factory=set)
    changed: dict = dataclasses.field(default_factory=dict)
    moved: dict = dataclasses.field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.new or self.removed or self.changed or self.moved)


def diff_graphs(before, after) -> GraphDiff:
    """Compare two graphs (as made by `to_graph`) node by node; see `GraphDiff`."""
    return _diff_flat(_flatten(before), _flatten(after))


def _diff_flat(old: _Flat, new: _Flat) -> GraphDiff:
    diff = GraphDiff(new=set(new.nodes) - set(old.nodes), removed=set(old.nodes) - set(new.nodes))
    for node_id, node in new.nodes.items():
        if node_id not in old.nodes or node.kind == "output":
            continue
        was = old.nodes[node_id]
        if was.class_name != node.class_name:
            diff.changed[node_id] = ["class"]
        else:
            keys = sorted(k for k in set(was.config) | set(node.config)
                          if k != "name" and was.config.get(k) != node.config.get(k))
            if keys:
                diff.changed[node_id] = keys
        old_in, new_in = old.producers(node_id), new.producers(node_id)
        if old_in != new_in and old.consumers(node_id) != new.consumers(node_id):
            diff.moved[node_id] = sorted(old_in - new_in)
    return diff


# --------------------------------------------------------------------------- DOT text


def quote(text) -> str:
    r"""A DOT double-quoted string. Newlines become ``\n`` (a centred line break).

    >>> quote('a "b"\nc')
    '"a \\"b\\"\\nc"'
    """
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "").replace("\n", "\\n") + '"'


def to_dot(after, *, before=None, title: str | None = None) -> str:
    """DOT text drawing graph `after`; with `before`, what changed is highlighted.

    Args:
        after: a graph made by `to_graph` (or edited by passes).
        before: the graph to compare with, e.g. the original model's.
        title: a caption; the model's name by default.

    Returns:
        The text of a ``digraph``, ready for ``dot -Tsvg``.
    """
    flat = _flatten(after)
    old = _flatten(before) if before is not None else None
    diff = _diff_flat(old, flat) if old is not None else GraphDiff()
    caption = title if title is not None else flat.name
    lines = [f"digraph {quote(flat.name)} {{",
             f"  graph [rankdir=TB, fontname={quote(FONT)}, label={quote(caption)}, "
             "labelloc=t, fontsize=14];",
             f"  node [shape=box, style=\"rounded,filled\", fillcolor=white, "
             f"fontname={quote(FONT)}, fontsize=10];",
             f"  edge [fontname={quote(FONT)}, fontsize=8];"]

    by_cluster = {}
    for node in flat.nodes.values():
        by_cluster.setdefault(node.cluster, []).append(_node_line(node, diff))
    if old is not None:
        for node_id in sorted(diff.removed):
            node = old.nodes[node_id]
            cluster = node.cluster if node.cluster in flat.clusters or not node.cluster else ()
            by_cluster.setdefault(cluster, []).append(_removed_line(node))
    lines.extend(_cluster_lines((), by_cluster, flat.clusters, "  "))

    for u, v in flat.edges:
        lines.append(f"  {quote(u)} -> {quote(v)};")
    if old is not None:
        for node_id, lost in diff.moved.items():
            for producer in lost:
                if producer in flat.nodes:
                    lines.append(f"  {quote(producer)} -> {quote(node_id)} [style=dashed, "
                                 f"color={REMOVED_COLOR}, fontcolor={REMOVED_COLOR}, "
                                 "label=\"was here\", constraint=false];")
        for u, v in old.edges:
            if u in diff.removed or v in diff.removed:
                lines.append(f"  {quote(u)} -> {quote(v)} [style=dashed, "
                             f"color={REMOVED_COLOR}];")
        lines.extend(_legend(diff))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_line(node: _Node, diff: GraphDiff) -> str:
    label = [node.name]
    if node.kind == "output":
        label = [node.id]
    elif node.class_name:
        label.append(node.class_name)
    if node.shape is not None:
        label.append(str(node.shape).replace(" ", ""))
    attrs = {}
    if node.kind in ("input", "output"):
        attrs["shape"] = "oval"
    fill = None
    if node.id in diff.new:
        label.append("(new)")
        fill = COLORS["new"]
    if node.id in diff.changed:
        label.append(f"(changed: {', '.join(diff.changed[node.id][:3])}"
                     f"{', ...' if len(diff.changed[node.id]) > 3 else ''})")
        fill = COLORS["changed"]
    if node.id in diff.moved:
        label.append("(moved)")
        fill = COLORS["moved"] if fill is None else fill
        attrs["penwidth"] = "2"
    if fill is not None:
        attrs["fillcolor"] = quote(fill)
    attrs["label"] = quote("\n".join(label))
    return f"{quote(node.id)} [{', '.join(f'{k}={v}' for k, v in attrs.items())}];"


def _removed_line(node: _Node) -> str:
    label = "\n".join([node.name, node.class_name, "(removed)"])
    return (f"{quote(node.id)} [label={quote(label)}, style=\"rounded,dashed\", "
            f"color={REMOVED_COLOR}, fontcolor={REMOVED_COLOR}];")


def _cluster_lines(path: tuple, by_cluster: dict, clusters: dict, indent: str) -> list:
    lines = [indent + line for line in by_cluster.get(path, [])]
    for child in clusters:
        if len(child) == len(path) + 1 and child[:len(path)] == path:
            lines.append(f"{indent}subgraph {quote('cluster_' + '/'.join(child))} {{")
            lines.append(f"{indent}  label={quote(clusters[child])}; style=rounded; "
                         "color=gray40;")
            lines.extend(_cluster_lines(child, by_cluster, clusters, indent + "  "))
            lines.append(f"{indent}}}")
    return lines


def _legend(diff: GraphDiff) -> list:
    present = [("new", diff.new), ("changed", diff.changed), ("moved", diff.moved)]
    items = [f"    {quote('legend_' + name)} [label={quote(name)}, "
             f"fillcolor={quote(COLORS[name])}];" for name, found in present if found]
    if diff.removed:
        items.append(f"    \"legend_removed\" [label=\"removed\", style=\"rounded,dashed\", "
                     f"color={REMOVED_COLOR}, fontcolor={REMOVED_COLOR}];")
    if not items:
        items.append("    \"legend_none\" [label=\"no changes\", shape=plaintext];")
    return ["  subgraph \"cluster_legend\" {", "    label=\"legend\"; style=dashed; "
            "color=gray70; fontsize=10;", *items, "  }"]


# --------------------------------------------------------------------------- writing


@dataclasses.dataclass
class Picture:
    """What `write_picture` wrote: `path`, whether it is rendered, and a note for the user."""

    path: str
    rendered: bool
    note: str


def write_picture(dot_text: str, path, *, overwrite: bool = False,
                  dot_program: str | None = None) -> Picture:
    """Write `dot_text` as the picture `path` (.svg, .png, .pdf: rendered; .dot/.gv: text).

    Written like a model (`keras_rewrite.atomic_save.write_file`): complete or not at all,
    an existing file only replaced with `overwrite`, a symbolic link replaced itself, never
    written through. When Graphviz's ``dot`` is not on PATH, the DOT text is written next to
    `path` with the suffix .dot instead, and the note says how to render it.

    Raises:
        OutputError: the file exists (without `overwrite`) or cannot be written there.
        PictureError: the folder is missing, or ``dot`` failed.
    """
    from .atomic_save import write_file

    p = pathlib.Path(path)
    if not p.parent.is_dir():
        raise PictureError(f"{path}: the folder {str(p.parent)!r} does not exist; expected an "
                           "existing folder for the picture")
    if p.suffix.lower() in (".dot", ".gv"):
        write_file(p, lambda tmp: _write_text(tmp, dot_text), overwrite=overwrite)
        return Picture(str(p), False, f"wrote {p}")
    program = dot_program or shutil.which("dot")
    if program is None:
        dot_path = p.with_suffix(".dot")
        write_file(dot_path, lambda tmp: _write_text(tmp, dot_text), overwrite=overwrite)
        return Picture(str(dot_path), False,
                       f"Graphviz 'dot' is not on PATH, so wrote {dot_path} instead of {p}; "
                       f"render it with: dot -T{p.suffix.lstrip('.') or 'svg'} {dot_path} "
                       f"-o {p}")
    fmt = p.suffix.lstrip(".").lower() or "svg"

    def render(tmp):
        try:
            done = subprocess.run([program, f"-T{fmt}", "-o", str(tmp)],
                                  input=dot_text.encode(), capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PictureError(f"{path}: running {program} failed: {exc}") from exc
        if done.returncode != 0:
            first = (done.stderr.decode(errors="replace").strip().splitlines()
                     or ["no message"])[0]
            raise PictureError(f"{path}: Graphviz dot exited with status {done.returncode}: "
                               f"{first}")

    write_file(p, render, overwrite=overwrite)
    return Picture(str(p), True, f"wrote {p}")


def _write_text(path, text: str) -> None:
    try:
        pathlib.Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PictureError(f"{path}: cannot write the picture: {exc.strerror or exc}") from exc
