"""Choosing channels to delete: by the L1 norm of their weights, or by APoZ on a batch."""
from __future__ import annotations

import keras
import numpy as np

from keras_rewrite import _keras
from keras_rewrite.graph.schema import to_graph
from keras_rewrite.surgery.errors import ChannelIndexError, UnsupportedLayerError
from keras_rewrite.surgery.locate import _calls_of, find_layer
from keras_rewrite.surgery.channels import _DEPTHWISE, _RNN_GATES, _SOURCES, _channel_axis


def _count(fraction_or_count, width, name):
    if isinstance(fraction_or_count, float):
        if not 0 < fraction_or_count < 1:
            raise ChannelIndexError(f"layer '{name}': expected a fraction in (0, 1) or a "
                                    f"count, received {fraction_or_count}")
        return int(fraction_or_count * width)
    n = int(fraction_or_count)
    if not 0 <= n < width:
        raise ChannelIndexError(f"layer '{name}': expected a count in 0..{width - 1}, "
                                f"received {n}")
    return n


def l1_norm_channels(model, layer, fraction_or_count) -> list[int]:
    """The output channels of `layer` with the smallest L1 norm of their weights, sorted.

    L1 of channel j: sum of |w| over the kernel's slice for j (Dense/Conv: kernel[..., j];
    Transpose: kernel[..., j, :]; SeparableConv: pointwise_kernel[..., j]; DepthwiseConv:
    kernel reshaped to (..., in * multiplier)[..., j]; RNN: the columns of j in every gate
    block of kernel and recurrent_kernel). `fraction_or_count`: a float in (0, 1) (that share
    of the channels, rounded down) or an int.
    """
    source = find_layer(model, layer)
    cls = type(source).__name__
    w = {name: np.asarray(keras.ops.convert_to_numpy(v))
         for (name, _), v in zip(_keras.variable_key_list(source), source.weights)}
    if cls in _RNN_GATES:
        units, gates = source.units, _RNN_GATES[cls]
        both = np.concatenate([w["kernel"], w["recurrent_kernel"]], axis=0)
        norms = np.abs(both).reshape(-1, gates, units).sum(axis=(0, 1))
    elif cls.startswith("SeparableConv"):
        k = w["pointwise_kernel"]
        norms = np.abs(k).reshape(-1, k.shape[-1]).sum(axis=0)
    elif cls in _DEPTHWISE:
        k = w["kernel"]
        flat = k.reshape(*k.shape[:-2], -1)
        norms = np.abs(flat).reshape(-1, flat.shape[-1]).sum(axis=0)
    elif cls.endswith("Transpose"):
        k = np.moveaxis(w["kernel"], -2, -1)
        norms = np.abs(k).reshape(-1, k.shape[-1]).sum(axis=0)
    elif cls in _SOURCES:
        k = w["kernel"]
        norms = np.abs(k).reshape(-1, k.shape[-1]).sum(axis=0)
    else:
        raise UnsupportedLayerError(f"layer '{source.name}' ({cls}): no output channels to "
                                    "rank by L1 norm")
    n = _count(fraction_or_count, norms.size, source.name)
    return sorted(int(i) for i in np.argsort(norms, kind="stable")[:n])


def apoz_channels(model, layer, x, fraction_or_count) -> list[int]:
    """The output channels of `layer` with the highest APoZ (average percentage of zeros) on
    the sample batch `x`, sorted.

    APoZ of channel j: the share of entries of channel j that are exactly 0 in the layer's
    activation output, over the batch and every other axis. The activation output is the
    layer's own output, or, when its only consumer is an activation layer (ReLU, Activation,
    ...), that layer's output.
    """
    graph = to_graph(model)
    spec, calls = _calls_of(graph, layer)
    g, node = calls[0]
    if g is not graph:
        raise UnsupportedLayerError(f"layer '{spec.name}' is inside a nested model; APoZ is "
                                    "measured on layers of the outer model only")
    source = spec.source
    tensor = _keras.first_output(source)
    users = [v for _, v in g.out_edges(node)]
    if len(users) == 1 and g.nodes[users[0]]["kind"] == "layer":
        user = g.nodes[users[0]]["spec"]
        if user.class_name in ("ReLU", "Activation", "LeakyReLU", "ELU", "ThresholdedReLU"):
            tensor = user.source.output
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(inputs, tensor)
    out = keras.ops.convert_to_numpy(probe(x, training=False))
    axis = _channel_axis(spec, out.ndim)
    zeros = np.moveaxis(out == 0, axis, -1).reshape(-1, out.shape[axis]).mean(axis=0)
    n = _count(fraction_or_count, zeros.size, spec.name)
    return sorted(int(i) for i in np.argsort(-zeros, kind="stable")[:n])
