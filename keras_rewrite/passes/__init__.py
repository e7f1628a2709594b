"""Rewrite passes. See `base` for what a pass is and how `run_passes` checks each one.

Each pass declares itself once, on its class (`short_name`, `summary`, options = its
``__init__`` arguments); `registry` finds this package's passes and third-party ones (entry-point
group ``keras_rewrite.passes``). Built in: see ``python -m keras_rewrite.passes.registry``.
"""
from __future__ import annotations

from keras_rewrite.errors import PassError

__all__ = ["Pass", "PassResult", "Change", "run_passes", "resolve_passes", "serialize_passes",
           "deserialize_passes",
           "L2Regularization", "SpatialDropout", "ReorderBlocks", "StripInference",
           "FoldBatchNorm", "DropBiasBeforeBN", "ReplaceActivation", "SetInputShape",
           "SetDtypePolicy"]


_BASE = {"Pass", "PassResult", "Change", "run_passes"}


def __getattr__(name):
    # `Pass`, `run_passes`, the pass classes (`passes.L2Regularization`) and `SHORT_NAMES` come
    # on first use: importing this package (and its registry) does not load Keras.
    if name in _BASE:
        from keras_rewrite.passes import base

        return getattr(base, name)
    if not name[:1].isupper():  # a submodule (`from keras_rewrite.passes import registry`
        # asks here first) or a dunder: not a pass class, import nothing
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from keras_rewrite.passes.registry import passes

    if name == "SHORT_NAMES":
        return {short: cls.__name__ for short, cls in passes().items()}
    by_class = {cls.__name__: cls for cls in passes().values()}
    if name in by_class:
        return by_class[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_passes(passes):
    """A list of pass objects from `passes`: pass objects, functions, or short names."""
    if isinstance(passes, str) or callable(passes):
        passes = [passes]
    if isinstance(passes, (dict, bytes)) or not hasattr(passes, "__iter__"):
        raise PassError(f"expected passes as a list of passes (Pass objects, functions taking "
                        f"the graph, or names from {sorted(_registered())}); received "
                        f"{passes!r} of type {type(passes).__name__}")
    resolved = []
    for p in passes:
        if isinstance(p, str):
            registered = _registered()
            if p not in registered:
                raise PassError(f"unknown pass name {p!r}; expected one of "
                                f"{sorted(registered)} or a pass object")
            try:
                resolved.append(registered[p]())
            except TypeError as exc:  # a pass whose options have no defaults
                raise PassError(f"pass {p!r} needs options: {exc}; expected "
                                f"{registered[p].__name__}(...) with them, e.g. "
                                f"keras_rewrite.passes.{registered[p].__name__}(...)") from None
        elif callable(p):
            resolved.append(p)
        else:
            raise PassError(f"expected a pass (a Pass object, a function taking the graph, or "
                            f"one of {sorted(_registered())}); received {p!r} of type "
                            f"{type(p).__name__}")
    return resolved


def _registered() -> dict:
    from keras_rewrite.passes.registry import passes

    return passes()


def serialize_passes(passes) -> list | None:
    """``[{"class": name, "config": {...}}, ...]`` for registered passes, or None if any pass
    cannot be re-created from a config (a function, a pass without `get_config`)."""
    from keras_rewrite.passes import base

    by_class = {cls.__name__: cls for cls in _registered().values()}
    out = []
    for p in passes:
        name = type(p).__name__
        config = p.get_config() if isinstance(p, base.Pass) else None
        if by_class.get(name) is not type(p) or config is None:
            return None
        out.append({"class": name, "config": config})
    return out


def deserialize_passes(specs) -> list:
    """The passes `serialize_passes` described."""
    by_class = {cls.__name__: cls for cls in _registered().values()}
    passes = []
    for spec in specs:
        if not isinstance(spec, dict) or spec.get("class") not in by_class:
            raise PassError(f"expected a registered pass {sorted(by_class)}; received {spec!r}")
        passes.append(by_class[spec["class"]](**spec.get("config", {})))
    return passes
