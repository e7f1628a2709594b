"""How deep Python may recurse while a model is rebuilt: Keras builds a Functional model
recursively, once per layer on the longest path (see ../shared/KERAS_FACTS.md), so a deep
chain needs more than Python's default limit."""
from __future__ import annotations

import contextlib
import sys
import threading

__all__ = ["recursion_limit_for"]

_recursion_lock = threading.Lock()
_recursion_needs: list[int] = []  # what each call inside `recursion_limit_for` needs
_recursion_limits = {"caller": 0, "set": 0}  # the caller's limit; the one set here last


@contextlib.contextmanager
def recursion_limit_for(num_nodes: int):
    """Raise Python's recursion limit enough for Keras to build a graph of `num_nodes` nodes.

    Keras builds a Functional model's node map recursively (keras/src/ops/function.py), about
    two frames per layer on the longest path, so a user may own a model deeper than the default
    limit allows to rebuild. The limit is restored afterwards.

    The limit is one for the whole interpreter, so overlapping calls (threads) share it: while
    any call runs, the limit is the largest any running call needs (or the caller's, if
    higher); when the last one ends, it is the caller's again, in whatever order they end. A
    limit the caller sets meanwhile becomes the caller's.
    """
    needed = 2000 + 4 * num_nodes
    with _recursion_lock:
        current = sys.getrecursionlimit()
        if not _recursion_needs or current != _recursion_limits["set"]:
            _recursion_limits["caller"] = current
        _recursion_needs.append(needed)
        _set_recursion_limit()
    try:
        yield
    finally:
        with _recursion_lock:
            if sys.getrecursionlimit() != _recursion_limits["set"]:
                _recursion_limits["caller"] = sys.getrecursionlimit()
            _recursion_needs.remove(needed)
            _set_recursion_limit()


def _set_recursion_limit() -> None:
    """The caller's limit, or more while calls that need more run (lock held)."""
    limit = max([_recursion_limits["caller"], *_recursion_needs])
    sys.setrecursionlimit(limit)
    _recursion_limits["set"] = limit
