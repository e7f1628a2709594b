"""Draw a model, or what changed between two versions of it, as a self-contained picture.

No Graphviz, no network: the layout is computed here (a layered DAG layout: each box on the
layer after its deepest producer, long edges routed through placeholder points, the order in
each layer by barycentre sweeps, x positions pulled toward the neighbours' centres), and the
output is text written by this module:

- ``.svg``: one SVG document; opens in any browser or image viewer.
- ``.html``: the same SVG inline, with a list of the changes (each links to its box), a
  legend, and a few lines of inline script for zoom (wheel, + and -), pan (drag) and
  "go to" (a click in the list centres the box). No external file, font or URL.
- ``.dot`` / ``.gv``: the same boxes and edges as Graphviz DOT text, for those who want it.

In a diff (`draw_diff`), each box is marked with its kinds of change (see
`keras_rewrite.analysis.diff`): a CSS class (``node added``, ``node removed``, ``node moved``,
``node changed-config``, ``node changed-weights``; ``node unchanged``; ``node run``), a fill
colour (legend on the picture) and a coloured stripe per kind on its left edge.
``data-layer`` holds the layer's name and ``data-id`` its node id. Removed layers are drawn
dashed, wired by dashed edges to where they were. Runs of unchanged layers (consecutive in a
topological order, inside one nested model) are collapsed into one box, "N unchanged
layers", whose tooltip (and, in HTML, a click) lists them: contracting a contiguous stretch
of a topological order never creates a cycle, so the collapsed picture is still a DAG.

Example:
    >>> import keras, keras_rewrite
    >>> from keras_rewrite.analysis import picture
    >>> inputs = keras.Input((4,), name="x")
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    >>> drawing = picture.draw_diff(keras_rewrite.diff_models(
    ...     model, keras_rewrite.rewrite(model, ["l2"])))
    >>> svg = picture.to_svg(drawing)
    >>> 'class="node changed-config"' in svg and 'data-layer="d"' in svg
    True
"""
from __future__ import annotations

import dataclasses
import html
import pathlib

from keras_rewrite.errors import RewriteError

__all__ = ["draw_diff", "draw_graph", "Drawing", "Box", "to_svg", "to_html", "to_dot",
           "write_picture", "Picture", "PictureError", "PICTURE_SUFFIXES", "CSS_CLASSES",
           "COLORS"]

PICTURE_SUFFIXES = (".svg", ".html", ".htm", ".dot", ".gv")
# Kind of change (keras_rewrite.analysis.diff.KINDS) -> CSS class of its box.
CSS_CLASSES = {"added": "added", "removed": "removed", "moved": "moved",
               "config": "changed-config", "weights": "changed-weights"}
COLORS = {"added": "#b7e4a7", "removed": "#e4e4e4", "moved": "#a9cdf5",
          "config": "#ffd97a", "weights": "#e5c4f2", "unchanged": "#ffffff",
          "run": "#f1f1f1", "io": "#eef3f8"}
STRIPES = {"added": "#3f9a2f", "removed": "#8a8a8a", "moved": "#2f6fbf",
           "config": "#d49a00", "weights": "#9b4dbd"}
LEGEND = {"added": "added", "removed": "removed", "moved": "moved (inputs changed)",
          "config": "config changed", "weights": "weights changed"}

FONT_SIZE = 12
CHAR_WIDTH = 7.0  # a generous average advance at FONT_SIZE in a sans-serif font
LINE_HEIGHT = 15
MAX_CHARS = 52
PAD_X, PAD_Y = 10, 7
GAP_X, GAP_Y = 26, 34
DUMMY_WIDTH = 6
MARGIN = 20
STRIPE = 5
HEADER_DIFF, HEADER_PLAIN = 100, 64  # room above the boxes: title, summary, legend
LEGEND_WIDTH = 620


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
    from keras_rewrite.analysis.diff import _topological

    full = _topological(order, [(u, v, 0) for u, v, _ in edges])
    position = {node_id: i for i, node_id in enumerate(full)}
    if all(position[u] < position[v] for u, v, _ in edges):
        return full, edges
    solid = _topological(order, [(u, v, 0) for u, v, removed in edges if not removed])
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


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + "…"


# --------------------------------------------------------------------------- layout


def _layout(boxes, edges, header: float) -> None:
    """Place `boxes` (in topological order) and route `edges` (sets x, y, w, h, points)."""
    for box in boxes:
        box.lines = [_clip(line) for line in box.lines]
        box.w = max(len(line) for line in box.lines) * CHAR_WIDTH + 2 * PAD_X + STRIPE
        box.h = len(box.lines) * LINE_HEIGHT + 2 * PAD_Y
    index = {box.key: i for i, box in enumerate(boxes)}
    preds = {box.key: [] for box in boxes}
    for edge in edges:
        preds[edge.target].append(edge.source)
    rank = {}
    for box in boxes:  # longest path from the sources
        rank[box.key] = max((rank[p] + 1 for p in preds[box.key]), default=0)

    # Long edges pass through one placeholder per layer they cross.
    width = {box.key: box.w for box in boxes}
    up, down = {k: [] for k in rank}, {k: [] for k in rank}
    chains = []
    for n, edge in enumerate(edges):
        chain = [edge.source]
        for level in range(rank[edge.source] + 1, rank[edge.target]):
            dummy = f"d{n}_{level}"
            rank[dummy], width[dummy] = level, DUMMY_WIDTH
            up[dummy], down[dummy] = [], []
            chain.append(dummy)
        chain.append(edge.target)
        weight = 0.05 if edge.removed else 1.0  # removed layers hang beside, not in line
        for a, b in zip(chain, chain[1:]):
            down[a].append((b, weight))
            up[b].append((a, weight))
        chains.append(chain)
    levels = [[] for _ in range(max(rank.values(), default=0) + 1)]
    hint = {}  # initial order: boxes in topological order, placeholders after their source
    for n, chain in enumerate(chains):
        for dummy in chain[1:-1]:
            hint[dummy] = index[chain[0]] + 0.5
    for key in sorted(rank, key=lambda k: hint.get(k, index.get(k))):
        levels[rank[key]].append(key)

    # Order within each layer: barycentre sweeps, down then up.
    position = {}

    def number(level):
        for i, key in enumerate(level):
            position[key] = i

    for level in levels:
        number(level)
    for sweep in range(8):
        downward = sweep % 2 == 0
        sequence = levels[1:] if downward else levels[-2::-1]
        for level in sequence:
            neighbours = up if downward else down
            keyed = []
            for i, key in enumerate(level):
                keyed.append((_mean([(position[k], w) for k, w in neighbours[key]],
                                    position[key]), i, key))
            keyed.sort()
            level[:] = [key for _, _, key in keyed]
            number(level)

    # x: each layer packed, then pulled toward its neighbours' centres, keeping the order;
    # in each layer the most important box (a layer, not a removed one, not a placeholder)
    # gets its wish and the others make room around it, so the main line stays straight.
    removed_keys = {box.key for box in boxes if "removed" in box.kinds}
    priority = {k: (0 if k not in index else 1 if k in removed_keys else 2,
                    len(up[k]) + len(down[k])) for k in rank}
    x = {}
    for level in levels:
        cursor = 0.0
        for key in level:
            x[key] = cursor
            cursor += width[key] + GAP_X
    for sweep in range(7):
        downward = sweep % 2 == 0
        sequence = levels[1:] if downward else levels[-2::-1]
        neighbours = up if downward else down
        for level in sequence:
            desired = [_centre_of(neighbours[key], x, width, priority, x[key] + width[key] / 2)
                       - width[key] / 2 for key in level]
            anchor = max(range(len(level)), key=lambda i: (priority[level[i]], -i))
            for key, value in zip(level, _place(desired, [width[k] for k in level], anchor)):
                x[key] = value
    shift = MARGIN - min(x.values(), default=0.0)
    heights = {box.key: box.h for box in boxes}
    y, top = header, {}
    for i, level in enumerate(levels):
        top[i] = y
        y += max((heights.get(k, 0) for k in level), default=0) + GAP_Y
    for box in boxes:
        box.x = x[box.key] + shift
        level_height = max(heights.get(k, 0) for k in levels[rank[box.key]])
        box.y = top[rank[box.key]] + (level_height - box.h) / 2

    # Edges: from the bottom of the source to the top of the target, through placeholders;
    # several edges at one box get ports spread over its width, in the order of the far end.
    by_key = {box.key: box for box in boxes}
    outs, ins = {}, {}
    for edge, chain in zip(edges, chains):
        outs.setdefault(edge.source, []).append((x[chain[1]], id(edge)))
        ins.setdefault(edge.target, []).append((x[chain[-2]], id(edge)))
    port_out, port_in = {}, {}
    for ports, table in ((outs, port_out), (ins, port_in)):
        for key, items in ports.items():
            items.sort()
            box = by_key[key]
            for i, (_, edge_id) in enumerate(items):
                table[edge_id] = box.x + STRIPE + (box.w - STRIPE) * (i + 1) / (len(items) + 1)
    for edge, chain in zip(edges, chains):
        source, target = by_key[edge.source], by_key[edge.target]
        points = [(port_out[id(edge)], source.y + source.h)]
        for dummy in chain[1:-1]:
            level = rank[dummy]
            level_height = max(heights.get(k, 0) for k in levels[level])
            centre = x[dummy] + shift + DUMMY_WIDTH / 2
            points += [(centre, top[level]), (centre, top[level] + level_height)]
        points.append((port_in[id(edge)], target.y))
        edge.points = points


def _place(desired, widths, anchor):
    """Positions as close to `desired` as the order and the gaps allow: box `anchor` gets
    its wish, the boxes left and right of it are packed outward from it."""
    placed = list(desired)
    for i in range(anchor - 1, -1, -1):
        placed[i] = min(desired[i], placed[i + 1] - widths[i] - GAP_X)
    for i in range(anchor + 1, len(desired)):
        placed[i] = max(desired[i], placed[i - 1] + widths[i - 1] + GAP_X)
    return placed


def _centre_of(neighbours, x, width, priority, default):
    """Where a box would like its centre: the mean centre of its most important neighbours
    (layers before removed layers before placeholders), so a long edge or a removed layer
    beside the main line does not pull it sideways."""
    if not neighbours:
        return default
    best = max(priority[k][0] for k, _ in neighbours)
    centres = [x[k] + width[k] / 2 for k, _ in neighbours if priority[k][0] == best]
    return sum(centres) / len(centres)


def _mean(weighted, default):
    total = sum(w for _, w in weighted)
    return sum(v * w for v, w in weighted) / total if total else default


def _cluster_rects(boxes, clusters) -> list:
    rects = []
    for path, label in clusters.items():
        members = [b for b in boxes if b.cluster[:len(path)] == path]
        if not members:
            continue
        pad = 14 - 3 * min(len(path) - 1, 3)
        x0 = min(b.x for b in members) - pad
        y0 = min(b.y for b in members) - pad - 16
        x1 = max(b.x + b.w for b in members) + pad
        y1 = max(b.y + b.h for b in members) + pad
        rects.append((label, x0, y0, x1 - x0, y1 - y0))
    return rects


# --------------------------------------------------------------------------- SVG


def _attr(value) -> str:
    return html.escape(str(value), quote=True)


def _style_sheet() -> str:
    rules = [".node rect.body{stroke:#888;stroke-width:1}",
             ".node text{font-size:%dpx;fill:#222}" % FONT_SIZE,
             ".node text .name{font-weight:bold}",
             ".node.removed rect.body{stroke-dasharray:5 3;stroke:#777}",
             ".node.removed text{fill:#666}",
             ".node.moved rect.body{stroke:%s;stroke-width:2.5}" % STRIPES["moved"],
             ".node.run rect.body{stroke:#bbb;stroke-dasharray:2 2}",
             ".node.run text{fill:#666;font-style:italic}",
             ".node.highlight rect.body{stroke:#e0301e;stroke-width:4}",
             ".edge{fill:none;stroke:#777;stroke-width:1.2}",
             ".edge.removed{stroke:#aaa;stroke-dasharray:5 4}",
             ".cluster rect{fill:#f7f9fc;stroke:#9aa9bd;stroke-width:1}",
             ".cluster text{font-size:12px;fill:#4b5d75}",
             ".legend text{font-size:12px;fill:#222}",
             ".caption{font-size:15px;font-weight:bold;fill:#222}",
             ".summary{font-size:13px;fill:#222}"]
    return "".join(rules)


def _svg_body(drawing: Drawing) -> list:
    out = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>',
           f'<text class="caption" x="{MARGIN}" y="{MARGIN + 6}">{_attr(drawing.title)}</text>']
    if drawing.summary != drawing.title:
        out.append(f'<text class="summary" x="{MARGIN}" y="{MARGIN + 24}">'
                   f'{_attr(drawing.summary)}</text>')
    out.append('<g class="clusters">')
    for label, x, y, w, h in drawing.clusters:
        out.append(f'<g class="cluster"><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
                   f'height="{h:.1f}" rx="8"/><text x="{x + 8:.1f}" y="{y + 14:.1f}">'
                   f'{_attr(label)}</text></g>')
    out.append('</g><g class="edges">')
    for edge in drawing.edges:
        css = "edge removed" if edge.removed else "edge"
        out.append(f'<path class="{css}" data-from="{edge.source}" data-to="{edge.target}" '
                   f'd="{_path(edge.points)}" marker-end="url(#arrow)"/>')
    out.append('</g><g class="nodes">')
    for box in drawing.boxes:
        out.append(_svg_box(box))
    out.append("</g>")
    if drawing.is_diff:
        out.append(_svg_legend(drawing))
    return out


def _svg_box(box: Box) -> str:
    attrs = [f'class="{box.css_class}"', f'id="{box.key}"']
    if box.role == "run":
        attrs.append(f'data-layers="{_attr(" ".join(box.ids))}"')
        attrs.append(f'data-count="{len(box.ids)}"')
    else:
        attrs.append(f'data-id="{_attr(box.ids[0])}"')
        attrs.append(f'data-layer="{_attr(box.lines[0] if box.role != "output" else box.ids[0])}"')
        attrs.append(f'data-change="{" ".join(box.kinds) or "none"}"')
    parts = [f'<g {" ".join(attrs)}><title>{_attr(box.tooltip)}</title>']
    if box.role == "run":  # a stack of cards
        parts.append(f'<rect x="{box.x + 4:.1f}" y="{box.y + 4:.1f}" width="{box.w:.1f}" '
                     f'height="{box.h:.1f}" rx="6" fill="#e2e2e2" stroke="#ccc"/>')
    radius = box.h / 2 if box.role in ("input", "output") else 6
    parts.append(f'<rect class="body" x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" '
                 f'height="{box.h:.1f}" rx="{min(radius, 14):.1f}" fill="{box.fill}"/>')
    for i, kind in enumerate(box.kinds):
        parts.append(f'<rect class="stripe" x="{box.x + 1 + i * (STRIPE + 1):.1f}" '
                     f'y="{box.y + 3:.1f}" width="{STRIPE}" height="{box.h - 6:.1f}" '
                     f'fill="{STRIPES[kind]}"/>')
    text_x = box.x + PAD_X + STRIPE + max(0, len(box.kinds) - 1) * (STRIPE + 1)
    parts.append(f'<text x="{text_x:.1f}" y="{box.y + PAD_Y + FONT_SIZE - 1:.1f}">')
    for i, line in enumerate(box.lines):
        css = ' class="name"' if i == 0 else ""
        dy = "0" if i == 0 else str(LINE_HEIGHT)
        parts.append(f'<tspan{css} x="{text_x:.1f}" dy="{dy}">{_attr(line)}</tspan>')
    parts.append("</text></g>")
    return "".join(parts)


def _svg_legend(drawing: Drawing) -> str:
    """The legend: a row of swatches under the summary, each with its count."""
    counts = {}
    for _, change in drawing.changes:
        for kind in change.kinds:
            counts[kind] = counts.get(kind, 0) + 1
    items = [(kind, f"{LEGEND[kind]} ({counts.get(kind, 0)})") for kind in LEGEND]
    items.append(("run", "unchanged layers, collapsed"))
    out = [f'<g class="legend" transform="translate({MARGIN},{MARGIN + 38})">']
    x, y = 0.0, 0.0
    for kind, text in items:
        step = 34 + len(text) * 6.8 + 14
        if x and x + step > LEGEND_WIDTH - MARGIN:
            x, y = 0.0, y + 20
        dash = ' stroke-dasharray="4 2"' if kind in ("removed", "run") else ""
        out.append(f'<g class="legend-item" data-kind="{kind}"><rect x="{x:.0f}" y="{y:.0f}" '
                   f'width="26" height="14" rx="3" fill="{COLORS[kind]}" '
                   f'stroke="{STRIPES.get(kind, "#bbb")}"{dash}/><text x="{x + 32:.0f}" '
                   f'y="{y + 11:.0f}">{_attr(text)}</text></g>')
        x += step
    out.append("</g>")
    return "".join(out)


def _path(points) -> str:
    """A smooth path through `points`, vertical at each point."""
    (x0, y0), rest = points[0], points[1:]
    d = [f"M{x0:.1f},{y0:.1f}"]
    for x1, y1 in rest:
        if abs(x1 - x0) < 0.5:
            d.append(f"L{x1:.1f},{y1:.1f}")
        else:
            mid = (y0 + y1) / 2
            d.append(f"C{x0:.1f},{mid:.1f} {x1:.1f},{mid:.1f} {x1:.1f},{y1:.1f}")
        x0, y0 = x1, y1
    return " ".join(d)


def to_svg(drawing: Drawing) -> str:
    """The drawing as a standalone SVG document (no external references)."""
    width, height = drawing.width, max(drawing.height, 160)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="keras-rewrite-picture" '
            f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
            'font-family="DejaVu Sans, Verdana, Arial, sans-serif">')
    body = _svg_body(drawing)
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>', head,
                      f"<title>{_attr(drawing.title)}</title>",
                      f"<style>{_style_sheet()}</style>",
                      '<rect width="100%" height="100%" fill="white"/>',
                      *body, "</svg>"]) + "\n"


# --------------------------------------------------------------------------- HTML

_PAGE_CSS = """
html,body{margin:0;height:100%;font-family:"DejaVu Sans",Verdana,Arial,sans-serif;font-size:13px}
body{display:flex}
#panel{width:360px;min-width:360px;height:100%;overflow:auto;border-right:1px solid #ccc;
  box-sizing:border-box;padding:10px 12px;background:#fafafa}
#panel h1{font-size:15px;margin:0 0 6px 0;word-break:break-all}
#panel .summary{margin:0 0 8px 0;color:#333}
#panel .help{color:#555;font-size:12px;margin:6px 0}
#panel ol{padding-left:0;margin:6px 0;list-style:none}
#panel li{margin:0 0 4px 0;padding:3px 5px 3px 8px;border-left:6px solid #ccc;background:#fff}
#panel li a{color:#123;text-decoration:none;font-weight:bold;word-break:break-all}
#panel li .cls{color:#555;font-weight:normal}
#panel li .what{color:#444;font-size:12px;word-break:break-word}
#panel li.current{outline:2px solid #e0301e}
#panel .legend span{display:inline-block;margin:0 8px 3px 0;white-space:nowrap}
#panel .legend i{display:inline-block;width:14px;height:10px;margin-right:4px;
  border:1px solid #999;vertical-align:middle}
#panel .filters label{margin-right:8px;white-space:nowrap}
#panel #detail:empty{display:none}
#panel #detail{white-space:pre-wrap;font-family:monospace;font-size:11px;background:#fff;
  border:1px solid #ddd;padding:4px;max-height:220px;overflow:auto}
#view{flex:1;position:relative;overflow:auto;background:white}
#view.zoomable{overflow:hidden;cursor:grab}
#view.zoomable.dragging{cursor:grabbing}
#tools{position:absolute;right:12px;top:10px;z-index:2}
#tools button{font-size:14px;min-width:34px;margin-left:3px;padding:3px 6px}
#view svg{display:block}
"""

_PAGE_SCRIPT = r"""
(function(){
var view=document.getElementById('view'), svg=view.querySelector('svg');
var W=+svg.getAttribute('width'), H=+svg.getAttribute('height');
var s={x:0,y:0,k:1};
view.classList.add('zoomable');
function apply(){
  var vw=view.clientWidth, vh=view.clientHeight;
  svg.setAttribute('width',vw); svg.setAttribute('height',vh);
  svg.setAttribute('viewBox',s.x+' '+s.y+' '+(vw/s.k)+' '+(vh/s.k));
}
function zoomAt(f,cx,cy){
  var k=Math.min(8,Math.max(0.02,s.k*f));
  s.x=cx/s.k+s.x-cx/k; s.y=cy/s.k+s.y-cy/k; s.k=k; apply();
}
function fit(){
  var vw=view.clientWidth, vh=view.clientHeight;
  s.k=Math.min(vw/W,vh/H); s.x=-(vw/s.k-W)/2; s.y=0; apply();
}
function start(){
  var vw=view.clientWidth;
  s.k=Math.min(1,vw/W); s.x=Math.min(0,-(vw/s.k-W)/2); s.y=0; apply();
}
function describe(g){  // a run lists every layer it holds (its tooltip stops at 60)
  var names=g.getAttribute('data-layers'), d=document.getElementById('detail');
  d.textContent=names ? names.split(' ').length+' unchanged layers:\n'+names.split(' ').join('\n')
                      : g.querySelector('title').textContent;
}
function goTo(key){
  var g=document.getElementById(key); if(!g) return;
  var r=g.querySelector('rect.body'), bx=+r.getAttribute('x'), by=+r.getAttribute('y');
  var bw=+r.getAttribute('width'), bh=+r.getAttribute('height');
  if(s.k<0.8) s.k=1;
  s.x=bx+bw/2-view.clientWidth/(2*s.k); s.y=by+bh/2-view.clientHeight/(2*s.k); apply();
  var old=document.querySelectorAll('.highlight,.current');
  for(var i=0;i<old.length;i++) old[i].classList.remove('highlight','current');
  g.classList.add('highlight');
  var li=document.querySelector('li[data-box="'+key+'"]');
  if(li){ li.classList.add('current'); li.scrollIntoView({block:'nearest'}); }
}
view.addEventListener('wheel',function(e){
  e.preventDefault(); var b=view.getBoundingClientRect();
  zoomAt(Math.exp(-e.deltaY*0.0015),e.clientX-b.left,e.clientY-b.top);
},{passive:false});
var drag=null;
view.addEventListener('mousedown',function(e){
  drag={x:e.clientX,y:e.clientY,sx:s.x,sy:s.y,moved:false}; view.classList.add('dragging');});
window.addEventListener('mousemove',function(e){ if(!drag) return;
  var dx=e.clientX-drag.x, dy=e.clientY-drag.y;
  if(Math.abs(dx)+Math.abs(dy)>3) drag.moved=true;
  s.x=drag.sx-dx/s.k; s.y=drag.sy-dy/s.k; apply();});
window.addEventListener('mouseup',function(){ view.classList.remove('dragging');
  setTimeout(function(){drag=null;},0);});
svg.addEventListener('click',function(e){
  if(drag&&drag.moved) return;
  var g=e.target.closest('.node'); if(g) describe(g);
});
document.getElementById('panel').addEventListener('click',function(e){
  var a=e.target.closest('a[data-box]'); if(!a) return; e.preventDefault();
  goTo(a.getAttribute('data-box')); describe(document.getElementById(a.getAttribute('data-box')));
});
var filters=document.querySelectorAll('.filters input');
for(var i=0;i<filters.length;i++) filters[i].addEventListener('change',function(){
  var shown={}; for(var j=0;j<filters.length;j++) shown[filters[j].value]=filters[j].checked;
  var items=document.querySelectorAll('#changes li');
  for(var j=0;j<items.length;j++){
    var kinds=items[j].getAttribute('data-kinds').split(' '), on=false;
    for(var m=0;m<kinds.length;m++) if(shown[kinds[m]]) on=true;
    items[j].style.display=on?'':'none';}
});
function tool(id,f){document.getElementById(id).addEventListener('click',f);}
tool('zoom-in',function(){zoomAt(1.25,view.clientWidth/2,view.clientHeight/2);});
tool('zoom-out',function(){zoomAt(0.8,view.clientWidth/2,view.clientHeight/2);});
tool('zoom-fit',fit); tool('zoom-one',start);
window.addEventListener('keydown',function(e){
  if(e.key==='+'||e.key==='=') zoomAt(1.25,view.clientWidth/2,view.clientHeight/2);
  else if(e.key==='-') zoomAt(0.8,view.clientWidth/2,view.clientHeight/2);
  else if(e.key==='0') fit(); else if(e.key==='1') start();
});
window.addEventListener('resize',apply);
function fromHash(){
  var h=decodeURIComponent(location.hash.slice(1)), g=null; if(!h) return;
  if(h==='first'){ var a=document.querySelector('#changes a[data-box]');
    if(a) g=document.getElementById(a.getAttribute('data-box')); }
  else if(/^n[0-9]+$/.test(h)) g=document.getElementById(h);
  var all=svg.querySelectorAll('.node');
  for(var i=0;!g&&i<all.length;i++){
    var n=all[i];
    if(n.getAttribute('data-id')===h||n.getAttribute('data-layer')===h||
       (' '+(n.getAttribute('data-layers')||'')+' ').indexOf(' '+h+' ')>=0) g=n; }
  if(g){ goTo(g.id); describe(g); }
}
start(); fromHash(); window.addEventListener('hashchange',fromHash);
})();
"""


def to_html(drawing: Drawing) -> str:
    """The drawing as one HTML page: the SVG inline, the list of changes linking to their
    boxes, a legend, zoom and pan. Inline CSS and script only: it works offline."""
    svg = to_svg(drawing).split("\n", 1)[1]  # no XML declaration inside HTML
    panel = [f"<h1>{_attr(drawing.title)}</h1>"]
    if drawing.summary != drawing.title:
        panel.append(f'<p class="summary">{_attr(drawing.summary)}</p>')
    if drawing.is_diff:
        legend = "".join(f'<span><i style="background:{COLORS[k]};border-left:4px solid '
                         f'{STRIPES[k]}"></i>{_attr(LEGEND[k])}</span>' for k in LEGEND)
        panel.append(f'<div class="legend">{legend}<span><i style="background:'
                     f'{COLORS["run"]}"></i>unchanged, collapsed</span></div>')
    panel.append('<p class="help">Click a box for its details; drag to pan; wheel or + / - '
                 'to zoom, 0 to fit, 1 for full size; #LAYER after the address opens at that '
                 'layer.</p><div id="detail"></div>')
    if drawing.is_diff:
        present = [k for k in LEGEND if any(k in c.kinds for _, c in drawing.changes)]
        if present:
            boxes = "".join(f'<label><input type="checkbox" value="{k}" checked> {k}</label>'
                            for k in present)
            panel.append(f'<div class="filters">show: {boxes}</div>')
        panel.append(f"<p>{len(drawing.changes)} changed layer"
                     f"{'' if len(drawing.changes) == 1 else 's'} (click one to go to it):</p>")
        items = []
        for key, change in drawing.changes:
            kinds = " ".join(change.kinds)
            css = " ".join(CSS_CLASSES[k] for k in change.kinds)
            what = _attr("; ".join(change.details(width=80)))
            items.append(f'<li class="{css}" data-kinds="{kinds}" data-box="{key}" '
                         f'style="border-left-color:{STRIPES[change.kinds[0]]}">'
                         f'<a href="#{key}" data-box="{key}">{_attr(change.id)} '
                         f'<span class="cls">({_attr(change.class_name)})</span></a>'
                         f'<div class="what">{what}</div></li>')
        panel.append(f'<ol id="changes">{"".join(items)}</ol>')
    tools = ('<div id="tools"><button id="zoom-in" title="zoom in (+)">+</button>'
             '<button id="zoom-out" title="zoom out (-)">−</button>'
             '<button id="zoom-fit" title="fit (0)">fit</button>'
             '<button id="zoom-one" title="full size (1)">1:1</button></div>')
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_attr(drawing.title)}</title>", f"<style>{_PAGE_CSS}</style></head>",
        f'<body><aside id="panel">{"".join(panel)}</aside>',
        f'<main id="view">{tools}{svg}</main>', f"<script>{_PAGE_SCRIPT}</script>",
        "</body></html>"]) + "\n"


# --------------------------------------------------------------------------- DOT


def quote(text) -> str:
    r"""A DOT double-quoted string. Newlines become ``\n`` (a centred line break).

    >>> quote('a "b"\nc')
    '"a \\"b\\"\\nc"'
    """
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "").replace("\n", "\\n") + '"'


def to_dot(drawing: Drawing) -> str:
    """The drawing's boxes and edges as Graphviz DOT text (Graphviz does its own layout)."""
    lines = [f"digraph {quote(drawing.title)} {{",
             f"  graph [rankdir=TB, label={quote(drawing.title)}, labelloc=t];",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontsize=10];']
    for box in drawing.boxes:
        style = '"rounded,filled,dashed"' if "removed" in box.kinds or box.role == "run" \
            else '"rounded,filled"'
        shape = "oval" if box.role in ("input", "output") else "box"
        lines.append(f"  {quote(box.key)} [label={quote(chr(10).join(box.lines))}, "
                     f"shape={shape}, style={style}, fillcolor={quote(box.fill)}, "
                     f"class={quote(box.css_class)}];")
    for edge in drawing.edges:
        extra = " [style=dashed, color=gray55]" if edge.removed else ""
        lines.append(f"  {quote(edge.source)} -> {quote(edge.target)}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- writing


@dataclasses.dataclass
class Picture:
    """What `write_picture` wrote: `path`, and a note for the user."""

    path: str
    note: str


def write_picture(drawing: Drawing, path, *, overwrite: bool = False) -> Picture:
    """Write `drawing` as `path`: .svg, .html (or .htm), or .dot (.gv) by its suffix.

    Written like a model (`keras_rewrite.files.atomic_save.write_file`): complete or not at all,
    an existing file only replaced with `overwrite`, a symbolic link replaced itself, never
    written through.

    Raises:
        PictureError: another suffix, or the folder is missing.
        OutputError: the file exists (without `overwrite`) or cannot be written there.
    """
    from keras_rewrite.files.atomic_save import write_file

    p = pathlib.Path(path)
    suffix = p.suffix.lower()
    if suffix not in PICTURE_SUFFIXES:
        raise PictureError(f"{path}: cannot draw a {suffix or 'suffix-less'} file; expected a "
                           f"name ending in {', '.join(PICTURE_SUFFIXES)} (open the .svg or "
                           ".html in a browser)")
    if not p.parent.is_dir():
        raise PictureError(f"{path}: the folder {str(p.parent)!r} does not exist; expected an "
                           "existing folder for the picture")
    if suffix in (".html", ".htm"):
        text, how = to_html(drawing), "open it in a browser"
    elif suffix == ".svg":
        text, how = to_svg(drawing), "open it in a browser"
    else:
        text, how = to_dot(drawing), f"render it with: dot -Tsvg {p} -o {p.with_suffix('.svg')}"
    write_file(p, lambda tmp: _write_text(tmp, text), overwrite=overwrite)
    marked = f"{len(drawing.changes)} changed layers marked; " if drawing.is_diff else ""
    return Picture(str(p), f"wrote {p} ({len(drawing.boxes)} boxes; {marked}{how})")


def _write_text(path, text: str) -> None:
    try:
        pathlib.Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PictureError(f"{path}: cannot write the picture: {exc.strerror or exc}") from exc
