"""A drawing as one SVG document (the boxes, edges, stripes and legend)."""
from __future__ import annotations

import html
from keras_rewrite.analysis.picture.drawing import Box, Drawing
from keras_rewrite.analysis.picture.style import (COLORS, FONT_SIZE, LEGEND, LEGEND_WIDTH,
                                                  LINE_HEIGHT, MARGIN, PAD_X, PAD_Y, STRIPE,
                                                  STRIPES)


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
