"""`SetInputChannels`: change the channel count (last axis) of a model input, adapting every
layer that reads it: Conv1D/2D/3D and Dense kernels reading the input directly or through
channel-wise layers (Rescaling with a scalar scale, Normalization, padding, cropping, pooling,
activations, dropout), and Normalization's per-channel mean and variance.

How the kernel's input-channel axis (old count C -> new count n) is adapted:

- "sum": every new channel gets the old kernel summed over its input channels, divided by n
  (n=1: the plain sum, so a gray image gives what the old model gives that image repeated over
  its C channels);
- "mean": every new channel gets the old kernel's mean over its input channels;
- "repeat": new channel j gets old channel j mod C, scaled by C/n;
- "zeros": the first min(n, C) channels are kept, new ones are zero.

Normalization's mean/variance: "sum"/"mean" give every new channel the mean of the old ones,
"repeat" cycles them, "zeros" keeps the first ones and gives new ones mean 0, variance 1.
(So "sum" through a Normalization is exact only when its channels share their statistics;
an adapted Normalization becomes one with constant mean/variance in its config.)
"""
from __future__ import annotations

import numpy as np

from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.surgery import kernel_state
from keras_rewrite.surgery.errors import SurgeryError, UnsupportedLayerError
from keras_rewrite.surgery.locate import _source_weights

HOWS = ("sum", "mean", "repeat", "zeros")
_CONVS = {"Conv1D", "Conv2D", "Conv3D", "Dense"}
_CHANNELWISE = {
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "GaussianNoise",
    "GaussianDropout", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Identity",
    "Resizing", "RandomFlip", "RandomTranslation", "RandomRotation", "RandomZoom", "RandomCrop",
}


def adapt_axis(array, n, how, axis):
    """`array` with its `axis` (the old channels) turned into `n` channels by rule `how`."""
    a = np.moveaxis(np.asarray(array), axis, -1)
    c = a.shape[-1]
    if how == "sum":
        new = np.repeat(a.sum(-1, keepdims=True) / n, n, axis=-1)
    elif how == "mean":
        new = np.repeat(a.mean(-1, keepdims=True), n, axis=-1)
    elif how == "repeat":
        new = a[..., [j % c for j in range(n)]] * (c / n)
    else:
        new = np.zeros(a.shape[:-1] + (n,), a.dtype)
        new[..., :min(n, c)] = a[..., :min(n, c)]
    return np.moveaxis(new.astype(a.dtype), -1, axis)


def _adapt_stats(array, n, how, fill):
    a = np.asarray(array)
    c = a.shape[-1]
    if how in ("sum", "mean"):
        new = np.repeat(a.mean(-1, keepdims=True), n, axis=-1)
    elif how == "repeat":
        new = a[..., [j % c for j in range(n)]]
    else:
        new = np.full(a.shape[:-1] + (n,), fill, a.dtype)
        new[..., :min(n, c)] = a[..., :min(n, c)]
    return new.astype(a.dtype)


class SetInputChannels(Pass):
    """Give input `input_name` (default: the model's only input) `n` channels (last axis),
    adapting the kernels that read it by rule `how` (see the module docstring). A layer on the
    way that cannot take it is refused (`UnsupportedLayerError`, naming it)."""

    short_name = "set_input_channels"
    summary = "changes an input's channel count, adapting the convs (and Normalization) reading it"
    structural = True
    outputs_unchanged = False

    def __init__(self, n, how="sum", input_name=None):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SurgeryError(f"expected n to be a positive int, received {n!r}")
        if how not in HOWS:
            raise SurgeryError(f"expected how to be one of {list(HOWS)}, received {how!r}")
        self.n, self.how, self.input_name = n, how, input_name

    def get_config(self):
        return {"n": self.n, "how": self.how, "input_name": self.input_name}

    def run(self, graph) -> PassResult:
        inputs = graph.graph["inputs"]
        if self.input_name is None:
            if len(inputs) != 1:
                raise SurgeryError(f"model '{graph.graph['name']}' has inputs {inputs}; expected "
                                   "one, or input_name naming which to change")
            node = inputs[0]
        elif self.input_name not in inputs:
            raise SurgeryError(f"input_name={self.input_name!r}: model "
                               f"'{graph.graph['name']}' has inputs {inputs}")
        else:
            node = self.input_name
        data = graph.nodes[node]
        spec = data["spec"]
        shape = tuple(data["output_shapes"][0])
        if len(shape) < 2 or shape[-1] is None:
            raise UnsupportedLayerError(f"input '{node}' has shape {shape}; expected a known "
                                        "channel count on its last axis (channels_last)")
        old = shape[-1]
        new_shape = shape[:-1] + (self.n,)
        config = dict(spec.config)
        key = "batch_shape" if "batch_shape" in config else "batch_input_shape"
        config[key] = list(new_shape) if isinstance(config.get(key), list) else new_shape
        graph.nodes[node]["spec"] = spec.replace(config=config)
        data["output_shapes"] = [new_shape]
        changes = [Change(spec.name, "input_channels", f"{old} -> {self.n}")]
        seen, todo = set(), [node]
        while todo:
            producer = todo.pop()
            for _, consumer, edge in graph.out_edges(producer, data=True):
                if consumer in seen:
                    continue
                seen.add(consumer)
                todo.extend(self._adapt(graph, consumer, old, changes))
        return PassResult(self.name, True, changes, outputs_unchanged=False)

    def _adapt(self, graph, node, old, changes):
        """Adapt one consumer of the changed channels; return the nodes to follow on from."""
        data = graph.nodes[node]
        if data["kind"] == "output":
            data["output_shapes"] = None
            return []
        spec = data["spec"]
        cls = spec.class_name
        what = (f"set_input_channels(n={self.n}, how={self.how!r}): layer '{spec.name}' "
                f"({cls}) reads the input's channels")
        if data["kind"] != "layer" or len(list(graph.in_edges(node))) != 1:
            raise UnsupportedLayerError(f"{what}; expected a layer with one input, received "
                                        f"{'an operation' if data['kind'] != 'layer' else 'a merge'}")
        config = spec.config
        if config.get("data_format", "channels_last") != "channels_last":
            raise UnsupportedLayerError(f"{what}; expected data_format='channels_last', received "
                                        f"{config.get('data_format')!r}")
        if cls in _CONVS:
            if config.get("groups", 1) != 1:
                raise UnsupportedLayerError(f"{what}; expected groups=1, received "
                                            f"groups={config['groups']}")
            weights = _source_weights(spec)
            if spec.weights:
                weights.update(spec.weights)
            kernel = weights["kernel"]
            if kernel.shape[-2] != old:
                raise UnsupportedLayerError(f"{what}; its kernel {kernel.shape} has "
                                            f"{kernel.shape[-2]} input channels, expected {old}")
            why = kernel_state.refusal(spec, weights, new_inputs=self.how)
            if why:
                raise UnsupportedLayerError(f"{what}; but {why}")
            # The adapters follow the kernel's input axis: every rule is linear along it, so
            # kernel + alpha/rank * a @ b is adapted as the merged kernel would be.
            spec.weights = {**(spec.weights or {}),
                            **{label: adapt_axis(weights[label], self.n, self.how, -2)
                               for label in kernel_state.INPUT_AXIS if label in weights}}
            changes.append(Change(spec.name, "kernel_adapted",
                                  f"input channels {old} -> {self.n} ({self.how})"))
            return []
        if cls == "Rescaling":
            for k in ("scale", "offset"):
                if np.ndim(config.get(k, 0)) and np.size(config[k]) != 1:
                    raise UnsupportedLayerError(f"{what}; expected a scalar {k}, received "
                                                f"{config[k]!r} (one per channel)")
        elif cls == "Normalization":
            self._normalization(spec, old, what, changes)
        elif cls not in _CHANNELWISE:
            raise UnsupportedLayerError(
                f"{what}; expected a Conv1D/2D/3D, Dense, Rescaling, Normalization or a "
                f"channel-wise layer ({', '.join(sorted(_CHANNELWISE)[:6])}, ...), received "
                f"{cls}")
        data["output_shapes"] = None
        return [node]

    def _normalization(self, spec, old, what, changes):
        config = spec.config
        axis = config.get("axis", -1)
        if axis not in (-1, [-1], (-1,)) and axis != [len(spec.source.input.shape) - 1]:
            raise UnsupportedLayerError(f"{what}; expected axis=-1, received axis={axis!r}")
        if config.get("mean") is not None:
            for k, fill in (("mean", 0.0), ("variance", 1.0)):
                value = np.asarray(config[k], "float32")
                if value.ndim and value.shape[-1] == old:
                    config[k] = _adapt_stats(value, self.n, self.how, fill).tolist()
        else:
            # An adapted layer's statistics become constructor values (the rebuild assigns
            # variables without re-deriving its broadcast mean/variance tensors).
            weights = _source_weights(spec)
            for k, fill in (("mean", 0.0), ("variance", 1.0)):
                if k not in weights or weights[k].shape[-1] != old:
                    raise UnsupportedLayerError(f"{what}; expected a per-channel {k} of {old} "
                                                f"values, received {weights.get(k)!r}")
                config[k] = _adapt_stats(weights[k], self.n, self.how, fill).tolist()
        changes.append(Change(spec.name, "statistics_adapted",
                              f"mean/variance channels {old} -> {self.n} ({self.how})"))
