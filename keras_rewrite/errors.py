"""Named errors. Each says what was wrong, what was expected and what was received.

Every error raised on purpose by keras_rewrite derives from `RewriteError`, so callers can catch
one class; the subclasses tell which step failed.

The second half holds the one-line error text: every error keras_rewrite prints or raises about a
file is one line naming the file, what is wrong, what was expected and what was received.
Keras's messages span paragraphs and carry terminal colour codes, and a file name can hold a
newline; `first_paragraph`, `one_line`, `layer_in_traceback` and `show_path` make them one line.

Nothing here imports Keras.
"""
from __future__ import annotations
import re



class RewriteError(Exception):
    """Base class of every error keras_rewrite raises on purpose."""


class UnsupportedModelError(RewriteError, TypeError):
    """The model has no graph of layer calls that can be walked (subclassed or unbuilt)."""


class GraphError(RewriteError, ValueError):
    """The graph breaks the schema documented in `keras_rewrite.graph.schema` (raised by `validate`)."""


class PassError(RewriteError, ValueError):
    """A pass was misconfigured or left the graph broken; the message names the pass."""


class RebuildError(RewriteError, ValueError):
    """A layer could not be re-created or called while rebuilding the model."""


class WeightTransferError(RewriteError, ValueError):
    """A weight could not be copied into the rebuilt layer."""


class ShapeMismatchError(RewriteError, ValueError):
    """The rebuilt model's output shapes differ from the original's.

    Attributes:
        layer: name of the first layer (in topological order) whose output shape changed.
        expected: the original output shape(s) of that layer.
        received: the rebuilt layer's output shape(s).
    """

    def __init__(self, message, layer=None, expected=None, received=None):
        super().__init__(message)
        self.layer = layer
        self.expected = expected
        self.received = received


class FidelityError(RewriteError, ValueError):
    """A layer no pass changed is not, in the rebuilt model, what it was in the original (a
    variable, dtype, trainable flag, dtype policy, quantization or LoRA state would be lost)."""


# ---------------------------------------------------------------- one-line error text
BUG_HINT = "report it as a bug"  # what to do about an error nobody raised on purpose


def unexpected_text(label, doing: str, exc: BaseException) -> str:
    """One line for an exception nobody raised on purpose: the file, what was being done, the
    layer where known, the first paragraph of the message, and what to do.

    >>> unexpected_text("m.keras", "while converting", RuntimeError("boom"))
    'm.keras: unexpected RuntimeError while converting: boom; report it as a bug'
    """
    return (f"{show_path(label)}: unexpected {type(exc).__name__} {doing}"
            f"{layer_in_traceback(exc)}: {first_paragraph(exc)}; {BUG_HINT}")


_PLAIN_PATH = re.compile(r"[\w./+:@%,=~-]+")


def show_path(path) -> str:
    """`path` as it can be shown in a one-line message: as is when it holds only ordinary
    characters, else quoted like a Python string (a newline becomes ``\\n``).

    >>> show_path("models/a.keras")
    'models/a.keras'
    >>> print(show_path("bad\\nname.keras"))
    'bad\\nname.keras'
    """
    text = str(path)
    return text if text and _PLAIN_PATH.fullmatch(text) else repr(text)


def one_line(exc, limit: int = 240) -> str:
    """`str(exc)` on one line, at most `limit` characters.

    >>> one_line(ValueError("a\\n  b"))
    'a b'
    """
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_paragraph(exc: BaseException, limit: int = 240) -> str:
    """The first paragraph of an exception's message on one line, without a final period
    (Keras appends examples and argument listings after a blank line; TensorFlow adds
    terminal colour codes).

    >>> first_paragraph(ValueError("Bad value.\\n\\nExample:\\n  x = 1"))
    'Bad value'
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    text = " ".join(re.split(r"\n\s*\n", text, maxsplit=1)[0].split()).rstrip(".")
    text = text or "(no message)"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def layer_in_traceback(exc: BaseException) -> str:
    """`` in layer 'name' (Class)`` for the innermost layer whose method the traceback passed
    through (a local ``self``, ``layer`` or ``operation``), else `` in a Class layer`` from
    Keras's "Exception encountered when calling Class.call()" or "Object Class was created by
    passing ...", else ``""``. Keras's traceback filtering drops its own frames: the command
    line turns it off while it runs."""
    import sys

    keras = sys.modules.get("keras")
    if keras is None:  # nothing of Keras ran, so no layer to name
        return ""
    chain, seen = [], exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for link in chain:
        frames, tb = [], link.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        for frame in reversed(frames):  # innermost first
            for name in ("self", "layer", "operation"):
                value = frame.f_locals.get(name)
                if isinstance(value, keras.layers.Layer) and not isinstance(value, keras.Model):
                    return f" in layer {value.name!r} ({type(value).__name__})"
    text = " ".join(str(link) for link in chain)
    found = (re.search(r"Exception encountered when calling (\w+)\.call\(\)", text)
             or re.search(r"Object (\w+) was created by passing", text))
    return f" in a {found.group(1)} layer" if found else ""
