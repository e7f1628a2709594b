"""Serializing a model must not change it (Keras-internals helper of issue 16; it belongs with
the other helpers in `keras_rewrite.rebuild` once `_keras` is split).

`DTypePolicyMap.get_config()` with ``default_policy=None`` sets ``_name`` and ``_source_name``
of every policy it holds to None *in place* (Keras 3.15), and `Backbone.get_config` builds such
a map from the layers' own policy objects: `serialize_keras_object(quantized_backbone)` renames
the live layers' policies. `policies_kept(model)` snapshots those private names for every
policy reachable from the model (a map's values included) and restores them afterwards.
"""
from __future__ import annotations

import contextlib

_NAMES = ("_name", "_source_name")


def _policies(model):
    seen = {}
    layers = model._flatten_layers(include_self=True, recursive=True) \
        if hasattr(model, "_flatten_layers") else []
    for layer in layers:
        policy = getattr(layer, "_dtype_policy", None)
        if policy is None:
            continue
        found = [policy]
        policy_map = getattr(policy, "_policy_map", None)
        if isinstance(policy_map, dict):
            found.extend(policy_map.values())
            default = getattr(policy, "default_policy", None)
            if default is not None:
                found.append(default)
        for p in found:
            seen.setdefault(id(p), p)
    return list(seen.values())


@contextlib.contextmanager
def policies_kept(model):
    """Run the body, then give every dtype policy of `model` its names back."""
    snapshot = [(p, {a: getattr(p, a) for a in _NAMES if hasattr(p, a)})
                for p in _policies(model)]
    try:
        yield
    finally:
        for policy, names in snapshot:
            for attribute, value in names.items():
                if getattr(policy, attribute, None) != value:
                    setattr(policy, attribute, value)
