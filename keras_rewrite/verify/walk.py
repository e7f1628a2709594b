"""The layer tree of a model: the model and each sub-layer at any depth, by path."""
from __future__ import annotations

from keras_rewrite import _keras

__all__ = ["walk_layers"]


def _children(layer) -> list:
    # Keras has no public way to list a layer's direct sub-layers (models have `.layers`).
    try:
        return _keras.sublayers(layer, include_self=False, recursive=False)
    except Exception:
        return []


def walk_layers(model):
    """(path, layer) for the model and each sublayer at any depth, parents first, a shared
    layer once. A path is the names from the model down, ``"block/proj"``; the model's is
    ``""``."""
    for path, layer, _ in _walk(model):
        yield path, layer


def _walk(model):
    """(path, layer, parent layer or None), depth first, a shared layer under its first
    parent only."""
    seen = set()

    def visit(layer, path, parent):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        yield path, layer, parent
        for child in _children(layer):
            yield from visit(child, f"{path}/{child.name}" if path else child.name, layer)

    yield from visit(model, "", None)
