"""Live layers, in place: what a pass's `apply_in_place` changes on a built model
(`RewriteCallback`). Passes decide on the graph and change live layers only through these."""
from __future__ import annotations


import keras

from keras_rewrite._keras import sublayers


def snapshot_live_state(model):
    """A function that puts back every attribute of `model`'s layers and every variable's
    regularizer and constraint as they are now (for all-or-nothing in-place passes)."""
    layers = sublayers(model)
    saved = [(layer, dict(vars(layer))) for layer in layers]
    variables = [(v, v.regularizer, v.constraint) for v in model.variables]

    def restore():
        for layer, attributes in saved:
            for name in [n for n in vars(layer) if n not in attributes]:
                object.__delattr__(layer, name)
            for name, value in attributes.items():
                if vars(layer).get(name, object()) is not value:
                    object.__setattr__(layer, name, value)
        for variable, regularizer, constraint in variables:
            variable.regularizer, variable.constraint = regularizer, constraint

    return restore


def _regularizer_owner(layer, in_cell: bool):
    return layer.cell if in_cell else layer  # recurrent layers keep weights on their cell


def regularized_variable(layer, variable_attr: str, in_cell: bool):
    """The variable (or whatever the layer holds there) a regularizer setting applies to."""
    return getattr(_regularizer_owner(layer, in_cell), variable_attr, None)


def live_regularizers(layer, key: str, variable_attr: str, in_cell: bool):
    """(declared, effective): the layer attribute `key` (what `get_config` and saving see)
    and the regularizer of its variable `variable_attr` (what the loss reads)."""
    variable = regularized_variable(layer, variable_attr, in_cell)
    return (getattr(_regularizer_owner(layer, in_cell), key, None),
            getattr(variable, "regularizer", None))


def set_live_regularizer(layer, key: str, variable_attr: str, in_cell: bool, declared,
                         effective) -> bool:
    """Set the attribute `key` to `declared` and the variable's regularizer to `effective`;
    False when `variable_attr` is not a variable (quantized or LoRA), so only the attribute
    is set."""
    owner = _regularizer_owner(layer, in_cell)
    setattr(owner, key, declared)
    variable = getattr(owner, variable_attr, None)
    if not isinstance(variable, keras.Variable):
        return False
    variable.regularizer = effective
    return True


def set_live_noise_shape(layer, noise_shape) -> None:
    """Give a live Dropout layer a `noise_shape` (used by its next traced call)."""
    layer.noise_shape = noise_shape
