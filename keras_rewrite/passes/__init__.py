"""Rewrite passes. See `base` for what a pass is."""
from __future__ import annotations

from ..errors import PassError
from .base import Change, Pass, PassResult, run_passes

__all__ = ["Pass", "PassResult", "Change", "run_passes", "resolve_passes"]

_SHORT_NAMES = {}


def register_short_name(name, factory):
    _SHORT_NAMES[name] = factory


def resolve_passes(passes):
    """Turn short names ("l2", "spatial_dropout", "reorder") into pass objects."""
    if isinstance(passes, (str, Pass)) or callable(passes) and not isinstance(passes, (list, tuple)):
        passes = [passes]
    resolved = []
    for p in passes:
        if isinstance(p, str):
            factory = _SHORT_NAMES.get(p)
            if factory is None:
                raise PassError(f"unknown pass name {p!r}; expected one of "
                                f"{sorted(_SHORT_NAMES)} or a pass object")
            resolved.append(factory())
        elif callable(p):
            resolved.append(p)
        else:
            raise PassError(f"expected a pass (a Pass object, a function taking the graph, or "
                            f"one of {sorted(_SHORT_NAMES)}); received {p!r} of type "
                            f"{type(p).__name__}")
    return resolved
