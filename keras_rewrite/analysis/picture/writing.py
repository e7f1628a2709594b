"""Writing a picture to a file, atomically, by its suffix."""
from __future__ import annotations

import dataclasses
import pathlib
from keras_rewrite.analysis.picture.dot import to_dot
from keras_rewrite.analysis.picture.drawing import Drawing, PictureError
from keras_rewrite.analysis.picture.style import PICTURE_SUFFIXES
from keras_rewrite.analysis.picture.html_page import to_html
from keras_rewrite.analysis.picture.svg import to_svg


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
