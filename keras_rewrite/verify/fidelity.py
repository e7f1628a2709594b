"""The fidelity proof run inside every rebuild: a layer is, in the rewrite, what it was.

A layer no pass changed is compared with its original at every depth (`layer_state.layer_state`):
each sub-layer's class, dtype policy (a quantized layer's ``int8_from_float32`` included),
quantization mode, trainable flag and LoRA rank; each variable's path, dtype, shape, trainable
flag and value, bit for bit, in `layer.weights` order; and which variables are one variable.
A layer a pass changed keeps what the pass did not change: where its sub-layers are the same
classes, their quantization modes, LoRA ranks and trainable flags, and their dtype policies
unless the pass set a new one; and the values of the variables carried over that the pass did
not compute, bit for bit.

A difference is a `FidelityError` naming the layer and what would have been lost: a model that
looks the same but computes or trains differently is never returned.
"""
from __future__ import annotations

import keras
import numpy as np

from keras_rewrite import _keras
from keras_rewrite.graph import kinds
from keras_rewrite.verify import layer_state
from keras_rewrite.errors import FidelityError

_LAYER_FIELDS = ("class", "dtype policy", "quantization mode", "trainable", "LoRA rank")
_VARIABLE_FIELDS = ("path", "dtype", "shape", "trainable", "overwrite_with_gradient", "sharing")


def check_layer(spec, layer, *, same_inputs: bool = True, carried=(), shared=(),
                expected=None, untouched=None) -> None:
    """Raise `FidelityError` if `layer` (rebuilt from `spec`) lost state of `spec.source`.

    With `same_inputs=False` (a pass changed the shapes the layer receives) variable shapes,
    and the values of variables whose shape changed, are not compared. `carried`: the labels
    of the variables the weight transfer says it carried (`LayerWeights.carried`); in a layer
    a pass changed, those the pass did not compute must hold the original's bits. `shared`:
    attributes of the layer holding layers shared with the rest of the model (a tied
    embedding), left out here: each is proved where it is rebuilt. `expected`: the
    original's `layer_state` with these `same_inputs`, and `untouched`, whether no pass changed
    the layer or its weights, if the caller knows them already (comparing configs is not
    free)."""
    source = spec.source
    if (spec.subgraph is not None or not isinstance(source, _keras.Layer)
            or not isinstance(layer, _keras.Layer)):
        return
    if untouched is None:
        untouched = spec.untouched and spec.weights is None
    if untouched:
        leave = ([getattr(source, name) for name in shared],
                 [getattr(layer, name) for name in shared])
        if shared or expected is None:
            expected = layer_state.layer_state(source, shapes=same_inputs, leave=leave[0])
        problem = (state_difference(
                       expected,
                       layer_state.layer_state(layer, shapes=same_inputs, leave=leave[1]))
                   or value_difference(source, layer, same_inputs, leave=leave))
        what = "no pass changed it, but"
    else:
        problem = (kept_difference(spec, source, layer)
                   or carried_difference(spec, source, layer, carried))
        what = "a pass changed it, and besides that"
    if problem:
        raise FidelityError(
            f"layer '{spec.name}' ({spec.class_name}): {what} the rebuilt layer differs from "
            f"the original: {problem}. The rewrite would return a model that computes or "
            "trains differently; nothing was returned")


def state_difference(expected: list, received: list) -> str | None:
    """The first difference between two `layer_state.layer_state` lists, in words, or None."""
    for want, got in zip(expected, received):
        if want == got:
            continue
        if want[0] != got[0]:
            break
        fields = _LAYER_FIELDS if want[0] == "layer" else _VARIABLE_FIELDS
        for field, a, b in zip(fields, want[1:], got[1:]):
            if a != b:
                where = (f"sub-layer {received.index(got)} ({got[1]})" if want[0] == "layer"
                         else f"variable '{want[1]}'")
                return f"{where} has {field} {a!r} in the original, {b!r} in the rewrite"
    if expected == received:
        return None
    kinds = lambda state, kind: [entry[1] for entry in state if entry[0] == kind]  # noqa: E731
    for kind in ("layer", "variable"):
        want, got = kinds(expected, kind), kinds(received, kind)
        if want != got:
            missing = [n for n in want if n not in got]
            extra = [n for n in got if n not in want]
            return (f"{kind}s {missing or extra} are "
                    f"{'missing from' if missing else 'new in'} the rewrite "
                    f"({len(want)} {kind}s in the original, {len(got)} in the rewrite)")
    return "the order of sub-layers and variables differs"


def value_difference(source, layer, same_shapes: bool = True, leave=((), ())) -> str | None:
    """The first variable whose value is not bit-identical, in words, or None (variables
    whose shape changed are skipped unless `same_shapes`; those of the sub-layers in
    `leave`, the source's and the layer's, are left out)."""
    for old, new in zip(layer_state.weights_without(source, leave[0]),
                        layer_state.weights_without(layer, leave[1])):
        if old is new:
            continue
        if not same_shapes and tuple(old.shape) != tuple(new.shape):
            continue
        if tuple(old.shape) != tuple(new.shape) or not _same_bits(old, new):
            return f"variable '{old.path}' holds other values"
    return None


_INT_OF_WIDTH = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}
if keras.backend.backend() == "tensorflow":  # Keras picks its backend once per process
    import tensorflow as _tf

    _read = _tf.raw_ops.ReadVariableOp
else:
    _tf = None


def _same_bits(old, new) -> bool:
    """True when two variables hold the same bits (NaNs and -0.0 included), compared where
    they live: under TensorFlow a carried variable shares its original's buffer until either
    is written (`_keras.copy_variable`), and one buffer holds one value, so the proof reads
    two addresses; otherwise a bitcast and one reduction, no host copy. A view of the buffers
    elsewhere. Comparing every value was most of the proof's cost: 25.6 M for ResNet50."""
    if _tf is not None:
        try:
            a, b = old.value, new.value
            if isinstance(a, _tf.Variable) and isinstance(b, _tf.Variable):
                # Reads (the bare op: a third cheaper than Variable.value()); on the CPU,
                # `np.asarray` of each is a view of its buffer.
                a = _read(resource=a.handle, dtype=a.dtype)
                b = _read(resource=b.handle, dtype=b.dtype)
                if _one_buffer(np.asarray(a), np.asarray(b)):
                    return True
            if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
                return False
            if a.dtype.is_floating:
                width = _INT_OF_WIDTH[a.dtype.size]
                a, b = _tf.bitcast(a, width), _tf.bitcast(b, width)
            return bool(_tf.reduce_all(_tf.equal(a, b)))
        except Exception:  # an unusual dtype: compare on the host
            pass
    a, b = np.asarray(old.numpy()), np.asarray(new.numpy())
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.itemsize in _INT_OF_WIDTH and a.dtype.kind in "fcV":
        unsigned = np.dtype(f"u{a.dtype.itemsize}")
        return bool(np.array_equal(a.view(unsigned), b.view(unsigned)))
    return a.tobytes() == b.tobytes()


def _one_buffer(a, b) -> bool:
    """Two arrays of one dtype and shape viewing the same memory (empty ones hold nothing)."""
    return a.dtype == b.dtype and a.shape == b.shape and (
        a.size == 0 or a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def carried_difference(spec, source, layer, carried) -> str | None:
    """The first variable of a changed layer reported carried, and not computed by a pass,
    whose value is not the original's bit for bit, in words, or None (variables whose shape or
    dtype the pass changed are not compared)."""
    computed = set(spec.weights or {})
    carried = set(carried) - computed
    old = dict(zip(_keras.variable_key_list(source), source.weights))
    for key, new in zip(_keras.variable_key_list(layer), layer.weights):
        original = old.get(key)
        if (original is None or kinds.weight_label(key) not in carried or original is new
                or tuple(original.shape) != tuple(new.shape) or original.dtype != new.dtype):
            continue
        if not _same_bits(original, new):
            return (f"variable '{original.path}' was carried over but holds other values (the "
                    "state protocol or a copy changed it)")
    return None


def kept_difference(spec, source, layer) -> str | None:
    """What a changed layer lost besides the pass's change: compared only where the pass left
    the sub-layers as they were (same names and classes)."""
    if type(source) is not type(layer):
        return None
    old_subs, new_subs = _keras.sublayers(source), _keras.sublayers(layer)
    if [(s.name, type(s)) for s in old_subs] != [(s.name, type(s)) for s in new_subs]:
        return None
    policy_changed = (spec.original_config or {}).get("dtype") != (spec.config or {}).get("dtype")
    for old, new in zip(old_subs, new_subs):
        checks = [("quantization mode", getattr(old, "quantization_mode", None),
                   getattr(new, "quantization_mode", None)),
                  ("LoRA rank", _lora_rank(old), _lora_rank(new)),
                  ("trainable", bool(old.trainable), bool(new.trainable))]
        if not policy_changed:
            checks.append(("dtype policy", _policy(old), _policy(new)))
        for field, a, b in checks:
            if a != b:
                return (f"sub-layer '{old.name}' has {field} {a!r} in the original, {b!r} in "
                        f"the rewrite (its class's config does not say it, so re-creating "
                        f"{spec.class_name} from its config cannot keep it)")
    return None


def _lora_rank(layer):
    return getattr(layer, "lora_rank", None) if getattr(layer, "lora_enabled", False) else None


def _policy(layer):
    return getattr(getattr(layer, "dtype_policy", None), "name", None)
