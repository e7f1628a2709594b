"""A drawing as Graphviz DOT text."""
from __future__ import annotations

from keras_rewrite.analysis.picture.drawing import Drawing


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
