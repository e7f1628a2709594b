"""`DropBiasBeforeBN`: remove the bias of a conv/dense layer that feeds BatchNormalization.

The math it relies on: BatchNormalization over the channel axis computes, per channel c,
``y = (x - m_c) * s_c + beta_c`` with ``s_c = gamma_c / sqrt(v_c + epsilon)``, where
``(m, v)`` are the batch mean and variance in training and the moving mean and variance at
inference. When ``x = W * u + b`` comes straight from a conv/dense layer with a bias ``b``
(one value per output channel, no activation in between):

- in training, the batch mean of ``x`` is the batch mean of ``W * u`` plus ``b``, and the
  variance does not depend on ``b``: BN subtracts the bias again, so it changes neither the
  output nor any other gradient, and its own gradient is zero. The bias never mattered;
- at inference, ``(W * u + b - moving_mean) = (W * u - (moving_mean - b))``: with
  ``use_bias=False`` and ``moving_mean' = moving_mean - b`` the outputs are the same up to
  float32 rounding (one subtraction happens in another order), not bit for bit. The moving
  mean keeps tracking what it tracked: training goes on as before.

The bias is per output channel for every layer kind matched (the last kernel axis for Dense and
Conv1D/2D/3D; the filters of Conv1D/2D/3DTranspose; ``in * depth_multiplier`` channels of
DepthwiseConv1D/2D; the pointwise output of SeparableConv1D/2D), so it subtracts from the BN's
moving mean channel by channel. Refused, with the reason in the report: a fused non-linear
activation on the layer (the bias then shifts what the activation sees: it matters), a
BatchNormalization over another axis than the layer's channels, and, from `keras_rewrite.passes.rules`,
the layer's output also used elsewhere (fan-out: the other user sees the bias) or a shared
layer. ``lint`` reports each match it would rewrite as ``bias-before-bn``.
"""
from __future__ import annotations

import numpy as np
from keras import layers

from keras_rewrite.graph import kinds
from keras_rewrite.passes.rules import L, Refusal, Rule
from keras_rewrite.passes.fold_batchnorm import refusal_before_bn

__all__ = ["DropBiasBeforeBN", "BIASED_KINDS"]

# The conv/dense layers whose bias is one value per output channel.
BIASED_KINDS = kinds.KERNEL_LAYERS


class DropBiasBeforeBN(Rule):
    """Set ``use_bias=False`` on each conv/dense layer directly before a BatchNormalization
    and fold its bias into the BN's moving mean (``moving_mean - bias``).

    Example:
        >>> import keras_rewrite
        >>> leaner = keras_rewrite.rewrite(model, ["drop_bias_before_bn"])  # doctest: +SKIP
    """

    short_name = "drop_bias_before_bn"
    summary = ("removes the bias of each conv/dense layer directly before BatchNormalization "
               "(BN cancels it), folding it into the BN's moving mean")
    pattern = L(BIASED_KINDS, use_bias=True) >> layers.BatchNormalization
    outputs_unchanged = None  # equal up to float32 rounding, not provably bit for bit
    structural = True  # the layer is re-created without its bias variable

    def get_config(self) -> dict:
        return {}

    def rewrite(self, match):
        layer, bn = match
        try:
            bias = np.asarray(layer.weights["bias"], "float32")
            mean = np.asarray(bn.weights["moving_mean"], "float32")
        except KeyError as exc:  # a layer a previous pass created without weights
            raise Refusal(f"the bias of '{layer.name}' or the moving mean of '{bn.name}' is "
                          f"not known yet: {exc.args[0]}") from None
        if bias.shape != mean.shape:
            raise Refusal(f"the bias of '{layer.name}' has shape {bias.shape}; expected the "
                          f"shape {mean.shape} of the moving mean of '{bn.name}'")
        layer.set_config(use_bias=False)
        return [layer, (bn, {"moving_mean": mean - bias})]

    def check(self, match):
        # The same conditions as folding BN into the layer: a fused activation in between
        # makes the bias matter; BN over another axis does not cancel a per-channel bias.
        return refusal_before_bn(*match)
