"""Compiling the rebuilt model like the original: loss and metrics, a fresh optimizer of the same
config, loss scaling for float16, weight-decay exclusions."""
from __future__ import annotations


import keras

from keras_rewrite._keras import sublayers


def compile_like(new_model, old_model):
    """Compile `new_model` with `old_model`'s loss and metrics and a fresh optimizer like its."""
    if not getattr(old_model, "compiled", False):
        return
    args = {k: _fresh(v) for k, v in old_model._compile_config.config.items()}
    optimizer = old_model.optimizer
    if optimizer is not None:
        args["optimizer"] = type(optimizer).from_config(optimizer.get_config())
        _carry_weight_decay_exclusions(optimizer, args["optimizer"], old_model, new_model)
        args["optimizer"] = _loss_scaled_like(args["optimizer"], old_model, new_model)
    new_model.compile(**args)


def _loss_scaled_like(optimizer, old_model, new_model):
    """`optimizer` (new), wrapped in a LossScaleOptimizer when `new_model` computes in float16
    and `old_model` did not, unwrapped in the opposite case.

    Keras wraps it in `compile` only when the *model's own* dtype policy is "mixed_float16"
    (the global policy when the model object was created); a rewrite that sets the policy of
    each layer (`SetDtypePolicy`) leaves the model's own, so the wrapping is done here.
    Without loss scaling, small float16 gradients underflow to zero.
    """
    def half(model):
        return any(getattr(getattr(layer, "dtype_policy", None), "name", None) ==
                   "mixed_float16" for layer in sublayers(model))

    scaler = keras.optimizers.LossScaleOptimizer
    if isinstance(optimizer, scaler):
        return optimizer.inner_optimizer if half(old_model) and not half(new_model) else optimizer
    return scaler(optimizer) if half(new_model) and not half(old_model) else optimizer


def _carry_weight_decay_exclusions(old, new, old_model, new_model) -> None:
    """`exclude_from_weight_decay` is not in an optimizer's config: carry the name pattern,
    and the excluded variables by path (the rebuilt model's variables are new objects)."""
    pattern = getattr(old, "_exclude_from_weight_decay_pattern", None)
    excluded = getattr(old, "_exclude_from_weight_decay", None) or set()
    if pattern is None and not excluded:
        return
    paths = {v.path for v in old_model.trainable_variables if old._var_key(v) in excluded}
    new.exclude_from_weight_decay(
        var_list=[v for v in new_model.trainable_variables if v.path in paths])
    new._exclude_from_weight_decay_pattern = pattern


def weight_decay_applies(optimizer, variable) -> bool:
    """Whether `optimizer` applies its ``weight_decay`` to `variable` (Keras 3 decays every
    trainable variable it updates unless `exclude_from_weight_decay` named it, by the variable
    itself or by a pattern searched in ``variable.name``): Keras's own decision
    (`_use_weight_decay`), read without filling its cache."""
    if not getattr(optimizer, "weight_decay", None):
        return False
    excluded = getattr(optimizer, "_exclude_from_weight_decay", None) or set()
    if excluded and optimizer._var_key(variable) in excluded:
        return False
    pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
    return pattern is None or pattern.search(variable.name) is None


def _fresh(value):
    """A new loss or metric object like `value` (evaluating the copy must not change the
    original's metric state); containers mapped, names and functions kept."""
    if isinstance(value, (list, tuple)):
        return type(value)(_fresh(v) for v in value)
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, (keras.metrics.Metric, keras.losses.Loss)):
        return type(value).from_config(value.get_config())
    return value
