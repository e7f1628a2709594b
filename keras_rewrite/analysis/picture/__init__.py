"""Pictures of a graph or of a diff: boxes and edges laid out, written as SVG, HTML or DOT."""
from keras_rewrite.analysis.picture.drawing import (COLORS, CSS_CLASSES, PICTURE_SUFFIXES, Box,
                                                    Drawing, Picture, PictureError, draw_diff,
                                                    draw_graph, to_dot, to_html, to_svg,
                                                    write_picture)

__all__ = ["draw_diff", "draw_graph", "Drawing", "Box", "to_svg", "to_html", "to_dot",
           "write_picture", "Picture", "PictureError", "PICTURE_SUFFIXES", "CSS_CLASSES", "COLORS"]
