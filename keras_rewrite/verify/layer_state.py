"""What Keras keeps on a built layer beyond its config, at every depth: what two layers must
share to compute and train alike."""
from __future__ import annotations

from keras_rewrite._keras import sublayers


def layer_state(layer, *, shapes=True, leave=()) -> list:
    """What Keras keeps on a built layer beyond its config, at every depth, in tracking order.

    Per sub-layer (the layer itself first): its class, dtype policy name (a quantized
    layer's is ``int8_from_float32`` and the like), `quantization_mode`, `trainable` and LoRA
    rank. Per variable, in `layer.weights` order: its path from the layer's name on, dtype,
    shape (unless `shapes=False`), `trainable`, `overwrite_with_gradient` (float8's scales and
    amax histories: the optimizer overwrites them) and the position of its first occurrence
    (tied variables stay one variable). Two layers with equal states compute and train alike,
    given equal variable values. `leave`: sub-layers (and their variables) left out.
    """
    state = []
    left = {id(sub) for held in leave for sub in sublayers(held)}
    for sub in sublayers(layer):
        if id(sub) in left:
            continue
        policy = getattr(sub, "dtype_policy", None)
        state.append(("layer", type(sub).__name__, getattr(policy, "name", None),
                      getattr(sub, "quantization_mode", None), bool(sub.trainable),
                      getattr(sub, "lora_rank", None) if getattr(sub, "lora_enabled", False)
                      else None))
    first = {}
    for i, variable in enumerate(weights_without(layer, leave)):
        state.append(("variable", _path_from(variable.path, layer.name), str(variable.dtype),
                      tuple(variable.shape) if shapes else None, bool(variable.trainable),
                      bool(getattr(variable, "overwrite_with_gradient", False)),
                      first.setdefault(id(variable), i)))
    return state


def weights_without(layer, leave=()) -> list:
    """`layer.weights` without the variables of the sub-layers in `leave`."""
    if not leave:
        return layer.weights
    left = {id(v) for held in leave for v in held.weights}
    return [v for v in layer.weights if id(v) not in left]


def _path_from(path: str, name: str) -> str:
    """`path` from the segment `name` on: the scope of the enclosing model a layer was built
    in (``sequential/dense/kernel`` when a Sequential builds it, ``dense/kernel`` when a file
    loads it) is not the layer's."""
    if path.startswith(name + "/"):  # the usual case, without splitting
        return path
    parts = path.split("/")
    return "/".join(parts[parts.index(name):]) if name in parts else path
