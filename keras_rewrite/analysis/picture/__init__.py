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
from keras_rewrite.analysis.picture.dot import to_dot
from keras_rewrite.analysis.picture.drawing import (Box, Drawing, PictureError, draw_diff,
                                                    draw_graph)
from keras_rewrite.analysis.picture.html_page import to_html
from keras_rewrite.analysis.picture.style import COLORS, CSS_CLASSES, PICTURE_SUFFIXES
from keras_rewrite.analysis.picture.svg import to_svg
from keras_rewrite.analysis.picture.writing import Picture, write_picture

__all__ = ["draw_diff", "draw_graph", "Drawing", "Box", "to_svg", "to_html", "to_dot",
           "write_picture", "Picture", "PictureError", "PICTURE_SUFFIXES", "CSS_CLASSES", "COLORS"]
