"""`FoldBatchNorm`: fold an inference BatchNormalization into the conv or dense layer before it.

The math it relies on: in inference mode BatchNormalization computes, per channel c,
``y = (x - mean_c) * s_c + beta_c`` with ``s_c = gamma_c / sqrt(var_c + epsilon)``. When
``x = W * u + b`` is a linear layer (no activation in between), the two are one linear layer
``W' = W * s`` (each output channel's kernel slice scaled by its ``s_c``) and
``b' = (b - mean) * s + beta``. Which kernel axis is the output channel depends on the layer:

============================  ====================================================
Dense, Conv1D/2D/3D           kernel[..., c] (last axis)
Conv1D/2D/3DTranspose         kernel[..., c, :] (kernel layout (k..., out, in))
DepthwiseConv1D/2D            kernel[..., i, m] with c = i * depth_multiplier + m
SeparableConv1D/2D            pointwise_kernel[..., c]; the depthwise kernel is unchanged
============================  ====================================================

A missing bias (``use_bias=False``) is created; a BN without ``scale`` or ``center`` counts
gamma = 1 or beta = 0. Refused, with the reason in the report, where the fold would not be
exact: a fused non-linear activation on the layer, a BatchNormalization over another axis than
the layer's channels, the layer's output also used elsewhere (fan-out; see `keras_rewrite.passes.rules`),
a quantized layer (its kernel holds int8/int4 values with a scale, or float8 with amax
histories: scaling it as a float kernel and casting back is off by 1.4-3.7 on a small Dense) and
a LoRA-enabled layer (its output adds ``A @ B``, which the fold would not scale: off by 2.1).
A `quantize` pass run *before* this one is fine: the rebuild folds first, then quantizes.
Inference outputs equal the original's up to float32 rounding (not bit for bit).
"""
from __future__ import annotations

import numpy as np
from keras import layers

from keras_rewrite.passes.rules import L, Refusal, Rule

__all__ = ["FoldBatchNorm", "refusal_before_bn"]

_LAST_AXIS = (layers.Dense, layers.Conv1D, layers.Conv2D, layers.Conv3D)
_TRANSPOSE = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
_FOLDABLE = _TRANSPOSE + _DEPTHWISE + _SEPARABLE + _LAST_AXIS  # subclasses first (Conv2DTranspose < Conv2D)


def refusal_before_bn(layer, bn) -> Refusal | None:
    """Why the per-channel affine map of `bn` cannot be moved into `layer`, the conv/dense
    call right before it: a fused non-linear activation in between, or a BatchNormalization
    over another axis than the layer's channels. None when it can."""
    state = _quantized_or_lora(layer)
    if state is not None:
        return Refusal(f"'{layer.name}' is {state}: folding scales a float kernel, which would "
                       "change its outputs")
    activation = layer.config.get("activation", "linear")
    if activation not in ("linear", None):
        return Refusal(f"'{layer.name}' has a fused activation={activation!r} between its "
                       "linear part and the BatchNormalization")
    rank = len(layer.output_shapes[0]) if layer.output_shapes else None
    channels = 1 if layer.config.get("data_format") == "channels_first" else -1
    axis = bn.config["axis"]
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if rank is None or not isinstance(axis, int) or axis % rank != channels % rank:
        return Refusal(f"'{bn.name}' normalizes axis {bn.config['axis']}, not the channel "
                       f"axis of '{layer.name}' (expected {channels})")
    return None


def _quantized_or_lora(layer) -> str | None:
    """What makes `layer`'s kernel not a plain float kernel (quantized, LoRA), or None."""
    import keras

    config = layer.config
    spec = getattr(layer, "spec", None)
    source = getattr(spec, "source", None)
    mode = getattr(source, "quantization_mode", None)
    if mode is None and isinstance(config.get("dtype"), (dict, str)):
        try:
            mode = getattr(keras.dtype_policies.get(config["dtype"]), "quantization_mode", None)
        except Exception:
            mode = None
    if mode is not None:
        return f"{mode}-quantized (dtype policy {_policy_name(source, config)})"
    rank = config.get("lora_rank") or (getattr(source, "lora_rank", None)
                                       if getattr(source, "lora_enabled", False) else None)
    if rank:
        return f"LoRA-enabled (lora_rank={rank})"
    return None


def _policy_name(source, config) -> str:
    policy = getattr(source, "dtype_policy", None)
    if policy is not None and policy.name:
        return repr(policy.name)
    dtype = config.get("dtype")
    return repr(dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype)


class FoldBatchNorm(Rule):
    """Fold each BatchNormalization directly after a conv/dense layer into that layer.

    Example:
        >>> import keras_rewrite
        >>> exported = keras_rewrite.rewrite(model, ["fold_batchnorm"])  # doctest: +SKIP
    """

    short_name = "fold_batchnorm"
    summary = "folds each BatchNormalization into the conv/dense layer before it (for export)"

    pattern = L(_FOLDABLE) >> layers.BatchNormalization
    outputs_unchanged = None  # equal up to float32 rounding, not provably bit for bit

    def get_config(self) -> dict:
        return {}

    def check(self, match):
        return refusal_before_bn(*match)

    def rewrite(self, match):
        layer, bn = match
        w, b = layer.weights, bn.weights
        gamma = b["gamma"] if bn.config.get("scale", True) else 1.0
        beta = b["beta"] if bn.config.get("center", True) else 0.0
        scale = gamma / np.sqrt(b["moving_variance"] + bn.config["epsilon"])
        bias = w["bias"] if layer.config.get("use_bias", True) else 0.0
        new = {"bias": ((bias - b["moving_mean"]) * scale + beta).astype("float32")}
        kind = layer.layer_class
        if issubclass(kind, _SEPARABLE):
            new["pointwise_kernel"] = w["pointwise_kernel"] * scale
        elif issubclass(kind, _DEPTHWISE):
            kernel = w["kernel"]
            new["kernel"] = kernel * scale.reshape(kernel.shape[-2:])
        elif issubclass(kind, _TRANSPOSE):
            new["kernel"] = w["kernel"] * scale[:, None]
        else:
            new["kernel"] = w["kernel"] * scale
        layer.set_config(use_bias=True)
        return [(layer, {k: np.asarray(v, "float32") for k, v in new.items()})]
