"""What the pictures look like: suffixes, colours and CSS classes by kind of change, sizes."""

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


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + "…"
