"""Rewrite passes. See `base` for what a pass is and how `run_passes` checks each one.

Built in: `L2Regularization` ("l2"), `SpatialDropout` ("spatial_dropout"),
`ReorderBlocks` ("reorder"), `StripInference` ("strip_inference"), `FoldBatchNorm`
("fold_batchnorm").
"""
from __future__ import annotations

import importlib

from ..errors import PassError
from .base import Change, Pass, PassResult, run_passes

__all__ = ["Pass", "PassResult", "Change", "run_passes", "resolve_passes", "serialize_passes",
           "deserialize_passes",
           "L2Regularization", "SpatialDropout", "ReorderBlocks", "StripInference",
           "FoldBatchNorm"]

# class name -> module, imported on first use; short name -> class name.
_BUILT_IN = {"L2Regularization": ".l2", "SpatialDropout": ".spatial_dropout",
             "ReorderBlocks": ".reorder", "StripInference": ".strip_inference",
             "FoldBatchNorm": ".fold_batchnorm"}
SHORT_NAMES = {"l2": "L2Regularization", "spatial_dropout": "SpatialDropout",
               "reorder": "ReorderBlocks", "strip_inference": "StripInference",
               "fold_batchnorm": "FoldBatchNorm"}


def __getattr__(name):
    if name in _BUILT_IN:
        return getattr(importlib.import_module(_BUILT_IN[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_passes(passes):
    """A list of pass objects from `passes`: pass objects, functions, or short names."""
    if isinstance(passes, str) or callable(passes):
        passes = [passes]
    if isinstance(passes, (dict, bytes)) or not hasattr(passes, "__iter__"):
        raise PassError(f"expected passes as a list of passes (Pass objects, functions taking "
                        f"the graph, or names from {sorted(SHORT_NAMES)}); received "
                        f"{passes!r} of type {type(passes).__name__}")
    resolved = []
    for p in passes:
        if isinstance(p, str):
            if p not in SHORT_NAMES:
                raise PassError(f"unknown pass name {p!r}; expected one of "
                                f"{sorted(SHORT_NAMES)} or a pass object")
            resolved.append(__getattr__(SHORT_NAMES[p])())
        elif callable(p):
            resolved.append(p)
        else:
            raise PassError(f"expected a pass (a Pass object, a function taking the graph, or "
                            f"one of {sorted(SHORT_NAMES)}); received {p!r} of type "
                            f"{type(p).__name__}")
    return resolved


def serialize_passes(passes) -> list | None:
    """``[{"class": name, "config": {...}}, ...]`` for built-in passes, or None if any pass
    is not a built-in one with a config (a function, a third-party pass)."""
    out = []
    for p in passes:
        name = type(p).__name__
        config = p.get_config() if isinstance(p, Pass) else None
        if name not in _BUILT_IN or type(p) is not __getattr__(name) or config is None:
            return None
        out.append({"class": name, "config": config})
    return out


def deserialize_passes(specs) -> list:
    """The passes `serialize_passes` described."""
    passes = []
    for spec in specs:
        if not isinstance(spec, dict) or spec.get("class") not in _BUILT_IN:
            raise PassError(f"expected a built-in pass {sorted(_BUILT_IN)}; received {spec!r}")
        passes.append(__getattr__(spec["class"])(**spec.get("config", {})))
    return passes
