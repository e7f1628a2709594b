"""Weight transfer: copy each original weight that still fits into the rebuilt layer.

A weight fits when the rebuilt layer has a weight of the same name (and occurrence, for layers
with sub-layers that reuse names), the same shape and the same dtype. Values are assigned
straight from the original variables (no NumPy round trip, no extra full copy of the model).
"""
from __future__ import annotations

from keras_rewrite.graph import kinds
from keras_rewrite import _keras
from keras_rewrite.rebuild import layer_copy
from keras_rewrite.errors import WeightTransferError
from keras_rewrite.report import LayerWeights


def transfer_weights(spec, layer, *, copied_because=None, assets_dir=None) -> LayerWeights:
    """Carry `spec.source`'s state into `layer`; say which weights were carried, new or dropped.

    Three ways, best first:
    - `layer` is a copy of the source object (`copied_because` says why): nothing to do.
    - `layer` has the source's build (same sub-layer classes and variable shapes) and no LoRA
      adapters (the protocol merges them into the kernel): Keras's own per-layer state
      protocol (`layer_copy.carry_state`): variables, derived state such as an adapted
      Normalization's, and assets such as lookup vocabularies; exactly what saving and
      loading the layer would carry.
    - otherwise (a pass changed the layer): variable by variable, by name (and occurrence),
      where the shape and dtype still fit.
    """
    record = LayerWeights(layer.name, type(layer).__name__)
    source = spec.source
    if source is None or not isinstance(source, _keras.Layer):
        for key in _keras.variable_key_list(layer):
            record.new.append((kinds.weight_label(key), "new layer, no original to copy from"))
        return record
    labels = [kinds.weight_label(key) for key in _keras.variable_key_list(layer)]
    if copied_because is not None:
        record.how = f"object copy: {copied_because}"
        record.carried.extend(labels)
        return record
    if (type(source) is type(layer) and not layer_copy.holds_lora(source)
            and _keras.layer_structure(source) == _keras.layer_structure(layer)):
        try:
            layer_copy.carry_state(source, layer, assets_dir)
        except Exception as exc:
            raise WeightTransferError(
                f"layer '{layer.name}' ({type(layer).__name__}): could not carry its state "
                f"with Keras's save/load protocol: {type(exc).__name__}: {exc}") from exc
        record.carried.extend(labels)
        return record
    record.how = "by name"
    old = dict(zip(_keras.variable_key_list(source), source.weights))
    pairs, unmatched = [], []
    for key, variable in zip(_keras.variable_key_list(layer), layer.weights):
        if key in old:
            pairs.append((key, variable, key))
        else:
            unmatched.append((key, variable))
    # A weight created without a name gets a process-wide number from Keras ("variable_18"),
    # so names differ between the original and the rebuilt layer. Weights are created in the
    # same order from the same config: pair the leftovers by position when the counts agree.
    matched = {old_key for _, _, old_key in pairs}
    leftover = [key for key in old if key not in matched]
    if unmatched and len(unmatched) == len(leftover):
        pairs.extend((key, variable, old_key)
                     for (key, variable), old_key in zip(unmatched, leftover))
        unmatched = []
    used = set()
    for key, variable, old_key in pairs:
        original = old[old_key]
        name = kinds.weight_label(key)
        used.add(old_key)
        if tuple(original.shape) != tuple(variable.shape):
            record.new.append((name, f"shape changed: original {tuple(original.shape)}, "
                                     f"now {tuple(variable.shape)}"))
            continue
        if original.dtype != variable.dtype:
            record.new.append((name, f"dtype changed: original {original.dtype}, "
                                     f"now {variable.dtype}"))
            continue
        try:
            _keras.copy_variable(variable, original)
        except Exception as exc:  # pragma: no cover - backend-specific failures
            raise WeightTransferError(
                f"layer '{layer.name}': could not copy weight '{name}' "
                f"(expected shape {tuple(variable.shape)}, dtype {variable.dtype}; received "
                f"shape {tuple(original.shape)}, dtype {original.dtype}): {exc}") from exc
        record.carried.append(name)
    for key, _ in unmatched:
        name = kinds.weight_label(key)
        record.new.append((name, f"original layer '{source.name}' has no weight '{name}'"))
    for key in old:
        if key not in used:
            record.dropped.append((kinds.weight_label(key), "the rebuilt layer has no such weight"))
    return record


def initialize_new_weights(spec, layer, record: LayerWeights) -> None:
    """Give the weights `record` lists as new their layer's own initial values.

    The rebuild builds layers with zero initializers, since carried-over values overwrite
    them. A weight that was not carried over (its shape changed, or the original had none)
    must not stay zero: a twin of the layer is built from the same config and build shapes
    (with its real initializers) and those weights are copied from it. Only layers with new
    weights pay for this.
    """
    new = {name for name, _ in record.new}
    if not new:
        return
    try:
        twin = _keras.new_operation(spec.cls, spec.config, spec.source)
        twin.build_from_config(layer.get_build_config())
    except Exception as exc:
        raise WeightTransferError(
            f"layer '{layer.name}': could not draw initial values for its new weights "
            f"{sorted(new)} (building a twin of the layer failed: {type(exc).__name__}: "
            f"{exc})") from exc
    if len(twin.weights) != len(layer.weights):
        raise WeightTransferError(
            f"layer '{layer.name}': a twin built from the same config has "
            f"{len(twin.weights)} weights; expected {len(layer.weights)}")
    # Same config, same construction order: the twin's weights line up by position (names
    # of unnamed weights differ, see transfer_weights).
    for key, variable, drawn in zip(_keras.variable_key_list(layer), layer.weights, twin.weights):
        if kinds.weight_label(key) in new:
            variable.assign(drawn.value)


def set_pass_weights(spec, layer, record: LayerWeights) -> None:
    """Assign the values a pass put in `spec.weights`; they replace what was carried or drawn.

    Raises:
        WeightTransferError: a label the layer has no weight for, or a value of another shape.
    """
    variables = {kinds.weight_label(key): v
                 for key, v in zip(_keras.variable_key_list(layer), layer.weights)}
    for label, value in spec.weights.items():
        variable = variables.get(label)
        if variable is None:
            raise WeightTransferError(
                f"layer '{layer.name}': a pass set weight '{label}', which the rebuilt "
                f"{type(layer).__name__} does not have; expected one of {sorted(variables)}")
        shape = tuple(getattr(value, "shape", ()))
        if shape != tuple(variable.shape):
            raise WeightTransferError(
                f"layer '{layer.name}': a pass set weight '{label}' of shape {shape}; expected "
                f"shape {tuple(variable.shape)}")
        variable.assign(value)
        record.carried = [n for n in record.carried if n != label]
        record.new = [(n, why) for n, why in record.new if n != label]
        record.transformed.append(label)
