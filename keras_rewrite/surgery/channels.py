"""`DeleteChannels`: delete output channels of a layer and carry the deletion through the graph
(the channel solver), every weight that still fits kept."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_rewrite.graph import kinds
from keras_rewrite.graph.schema import Slot, topological_order
from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.surgery import kernel_state
from keras_rewrite.surgery.errors import (ChannelIndexError, TiedChannelsError,
                                          UnsupportedLayerError)
from keras_rewrite.surgery.locate import _calls_of, _source_weights


# ==================================================================== delete_channels
#
# A deletion on a tensor is `_Del(axis, indices, width)`: positions `indices` (sorted) of axis
# `axis` (counted with the batch axis, >= 1) of a tensor whose axis had `width` entries.
# Sources are layers whose output channels are deleted (their kernel's output axis shrinks);
# the deletion is carried forward through the graph in topological order. A merge needs the
# same deletion on every input: an input without it is a *request*, answered by walking
# upstream to the layer producing those channels and adding it to the sources; then the
# forward walk starts again. The sources only grow, so this ends.

@dataclasses.dataclass(frozen=True)
class _Del:
    axis: int
    indices: tuple
    width: int

    def union(self, other):
        return _Del(self.axis, tuple(sorted(set(self.indices) | set(other.indices))), self.width)


# Class names (the graph's `LayerSpec.class_name`): layers whose output channels can go.
_SOURCES = kinds.names(kinds.DENSE + kinds.CONV + kinds.CONV_TRANSPOSE + kinds.SEPARABLE
                       + kinds.RECURRENT)
_DEPTHWISE = kinds.names(kinds.DEPTHWISE)
_RNN_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
# Layers that keep each channel apart and in place (no weights, or per-channel ones below).
_PASSTHROUGH = {
    "Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Identity", "Dropout",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "MaxPooling1D",
    "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D",
    "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "BatchNormalization",
    "LayerNormalization"}
_GLOBAL_POOL = {f"Global{k}Pooling{d}D" for k in ("Max", "Average") for d in (1, 2, 3)}
_MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}


def _channel_axis(spec, rank: int) -> int:
    return 1 if spec.config.get("data_format") == "channels_first" else rank - 1


def _normalize_channels(spec, channels, width):
    """Sorted distinct non-negative indices; -1 counts from the end."""
    if isinstance(channels, (int, np.integer)):
        channels = [channels]
    out = set()
    for c in channels:
        if not isinstance(c, (int, np.integer)) or isinstance(c, bool):
            raise ChannelIndexError(f"layer '{spec.name}': channel {c!r} is not an integer")
        if not -width <= c < width:
            raise ChannelIndexError(
                f"layer '{spec.name}' ({spec.class_name}) has {width} channels (indices 0 to "
                f"{width - 1}, or -{width} to -1); channel index {int(c)} is out of range")
        out.add(int(c) % width)
    if not out:
        raise ChannelIndexError(f"layer '{spec.name}': expected at least one channel to delete, "
                                "received none")
    if len(out) >= width:
        raise ChannelIndexError(f"layer '{spec.name}' ({spec.class_name}): cannot delete every "
                                f"one of its {width} channels (indices {sorted(out)})")
    return tuple(sorted(out))


def _output_width(spec) -> int:
    config = spec.config
    for key in ("filters", "units"):
        if key in config:
            return int(config[key])
    raise UnsupportedLayerError(f"layer '{spec.name}' ({spec.class_name}) has no filters or units")


class DeleteChannels(Pass):
    """Delete output channels (filters / units) of one layer and adapt everything downstream.

    Acts on Dense, Conv1D/2D/3D and their Transpose, SeparableConv1D/2D (pointwise output),
    DepthwiseConv1D/2D (its channel ``c*m + k`` is channel ``c`` of its input times multiplier
    ``m``: the input channels whose every copy is deleted are deleted upstream), LSTM, GRU and
    SimpleRNN units.

    Weight math (``np.delete`` of the deleted indices ``D``):
        source Dense/Conv: kernel[..., D] (Transpose: kernel[..., D, :]), bias[D];
        SeparableConv: pointwise_kernel[..., D], bias[D];
        RNN with G gate blocks of ``units``: columns ``g*units + d`` of kernel,
            recurrent_kernel and bias (GRU reset_after: bias[:, ...]), and rows D of
            recurrent_kernel;
        BatchNormalization / LayerNormalization (over the channel axis): gamma, beta,
            moving_mean, moving_variance at D;
        Flatten of an input of shape S: positions ``ravel_multi_index`` of every entry whose
            channel is in D (channels_last (H, W, C): ``h*W*C + w*C + c``);
        Concatenate on the channel axis: input j's D shifted by the widths of inputs < j;
        a consumer's kernel input axis: Dense kernel[D, :], Conv kernel[..., D, :],
            Transpose kernel[..., D], RNN kernel[D, :], SeparableConv depthwise[..., D, :] and
            pointwise rows ``d*m + k``, DepthwiseConv kernel[..., D, :] and bias ``d*m + k``
            (its outputs ``d*m + k`` are deleted in turn and carried on).

    Residual merges (Add, Subtract, Multiply, Average, Maximum, Minimum) and a layer called on
    several tensors need the same channels deleted on every input: the producers of the other
    inputs are pruned too, recursively; where that is impossible (a model input, a layer kind
    that does not own its channels) it refuses with `TiedChannelsError` saying why.
    """

    def __init__(self, layer, channels):
        self.layer = layer
        self.channels = channels

    def run(self, graph) -> PassResult:
        spec, calls = _calls_of(graph, self.layer)
        state = _Pruning(graph)
        if spec.class_name in _SOURCES:
            width = _output_width(spec)
            state.sources[id(spec)] = (spec, _normalize_channels(spec, self.channels, width))
        elif spec.class_name in _DEPTHWISE:
            self._depthwise_source(state, spec, calls)
        else:
            raise UnsupportedLayerError(
                f"cannot delete channels of layer '{spec.name}' ({spec.class_name}): expected "
                f"one of {', '.join(_SOURCES + _DEPTHWISE)}")
        state.solve()
        changes = state.apply()
        return PassResult(self.name, modified=True, changes=changes, outputs_unchanged=False)

    def _depthwise_source(self, state, spec, calls):
        """A depthwise channel is (input channel, copy): delete whole input channels upstream."""
        m = int(spec.config.get("depth_multiplier", 1))
        g, node = calls[0]
        shape = g.nodes[node]["output_shapes"][0]
        axis = _channel_axis(spec, len(shape))
        deleted = _normalize_channels(spec, self.channels, shape[axis])
        inputs = sorted({d // m for d in deleted})
        partial = [c for c in inputs if any(c * m + k not in deleted for k in range(m))]
        if partial:
            raise ChannelIndexError(
                f"layer '{spec.name}' (DepthwiseConv, depth_multiplier={m}): deleting channels "
                f"{list(deleted)} means deleting input channel {partial[0]} of it, which also "
                f"makes channels {[partial[0] * m + k for k in range(m)]}; expected every one "
                "of them in the list")
        width = shape[axis] // m
        if len(inputs) >= width:
            raise ChannelIndexError(f"layer '{spec.name}': deleting channels {list(deleted)} "
                                    f"deletes every one of its {width} input channels")
        for g, node in calls:
            ((producer, _, edge),) = g.in_edges(node, data=True)
            state.requests.append((g, producer, edge["tensor_index"],
                                   _Del(axis, tuple(inputs), width), node))

    def get_config(self):
        return None


class _Pruning:
    """The solver of `DeleteChannels`: sources, forward walk, upstream requests, edits."""

    def __init__(self, graph):
        self.graph = graph
        self.sources = {}  # id(spec) -> (spec, output indices)
        self.requests = []  # (graph, producer node, tensor index, _Del wanted, asked by)

    # --------------------------------------------------------------------- fixpoint
    def solve(self):
        for _ in range(1000):
            for g, node, index, wanted, by in self.requests:
                self._request(g, node, index, wanted, by)
            self.requests = []
            before = {k: v[1] for k, v in self.sources.items()}
            self.edits = {}  # id(spec) -> [spec, output indices or None]
            self.calls = {}  # id(spec) -> [input _Del or None, one per call]
            self.outputs = []  # (graph, output node, _Del)
            self.changed_nodes = []  # (graph, node)
            self.nested_inputs = []  # (nested graph, input node, _Del)
            self._forward(self.graph, {})
            if not self.requests:
                return
            for g, node, index, wanted, by in self.requests:
                self._request(g, node, index, wanted, by)
            self.requests = []
            after = {k: v[1] for k, v in self.sources.items()}
            if after == before:  # pragma: no cover - a request always adds a source or raises
                raise TiedChannelsError("channel deletions do not settle")
        raise TiedChannelsError("channel deletions do not settle")  # pragma: no cover

    # --------------------------------------------------------------------- forward
    def _forward(self, g, input_dels):
        """Deletions of every tensor of `g` in topological order; returns {output index: _Del}."""
        dels = {}  # (node, tensor_index) -> _Del
        result = {}
        for node in topological_order(g):
            data = g.nodes[node]
            if data["kind"] == "input":
                if node in input_dels:
                    dels[(node, 0)] = input_dels[node]
                continue
            ins = {e["slot"]: (u, e["tensor_index"], dels.get((u, e["tensor_index"])))
                   for u, _, e in g.in_edges(node, data=True)}
            if data["kind"] == "output":
                (_, _, d), = ins.values()
                if d is not None:
                    self.outputs.append((g, node, d))
                    result[data["index"]] = d
                continue
            spec = data["spec"]
            source = self.sources.get(id(spec))
            if not source and spec.subgraph is None and all(d is None for *_, d in ins.values()):
                self._note_call(spec, None)
                continue
            outs = self._visit(g, node, spec, ins, source)
            for index, d in (outs or {}).items():
                dels[(node, index)] = d
            if outs:
                self.changed_nodes.append((g, node))
        return result

    def _edit(self, spec):
        return self.edits.setdefault(id(spec), [spec, None])

    def _note_call(self, spec, in_del):
        """Record what one call of `spec` receives (a shared layer must receive the same)."""
        self.calls.setdefault(id(spec), []).append(in_del)
        if in_del is not None:
            self._edit(spec)

    def _visit(self, g, node, spec, ins, source):
        cls = spec.class_name
        if spec.subgraph is not None:
            return self._nested(g, node, spec, ins)
        if cls in _MERGES or (cls == "Concatenate" and not self._concat_on(g, spec, ins)):
            return self._merge(g, node, spec, ins)
        if cls == "Concatenate":
            return self._concat(g, spec, ins)
        if g.nodes[node]["kind"] == "op":
            raise UnsupportedLayerError(
                f"cannot carry deleted channels through operation '{node}' ({cls}): only "
                "layers are handled; use a Keras layer (keras.layers.Add, ...) instead")
        if len(ins) != 1:
            raise UnsupportedLayerError(f"cannot carry deleted channels into layer "
                                        f"'{spec.name}' ({cls}): it takes {len(ins)} inputs")
        (producer, index, d), = ins.values()
        if d is not None:
            rank = len(g.nodes[producer]["output_shapes"][index])
            axis = self._input_channel_axis(spec, rank)
            if axis is not None and d.axis != axis:
                raise UnsupportedLayerError(
                    f"layer '{spec.name}' ({cls}) has its channels on axis {axis}, but the "
                    f"deleted channels {list(d.indices)} reaching it are on axis {d.axis}")
        self._note_call(spec, d)
        if source is not None:
            return self._source_outputs(g, node, spec, source)
        if cls in _PASSTHROUGH:
            return {0: d}
        if cls in _GLOBAL_POOL:
            return {0: _Del(d.axis if spec.config.get("keepdims") else 1, d.indices, d.width)}
        if cls == "Flatten":
            return {0: self._flatten(g, spec, producer, index, d)}
        if cls in _SOURCES:  # a consumer: its kernel's input axis shrinks, nothing goes on
            return None
        if cls in _DEPTHWISE:
            m = int(spec.config.get("depth_multiplier", 1))
            return {0: _Del(d.axis, tuple(c * m + k for c in d.indices for k in range(m)),
                            d.width * m)}
        raise UnsupportedLayerError(
            f"cannot carry deleted channels {list(d.indices)} through layer '{spec.name}' "
            f"({cls}): it is not a layer kind surgery knows how to adapt")

    @staticmethod
    def _input_channel_axis(spec, rank):
        """The axis whose entries a layer keeps apart, or None: any axis (elementwise)."""
        cls = spec.class_name
        if cls in ("BatchNormalization", "LayerNormalization"):
            axis = spec.config.get("axis", -1)
            axes = [a % rank for a in (axis if isinstance(axis, (list, tuple)) else [axis])]
            if len(axes) != 1:
                raise UnsupportedLayerError(
                    f"layer '{spec.name}' ({cls}) works over axes {axes}; channels can be "
                    "deleted only when it works over the channel axis alone")
            return axes[0]
        if cls == "Dense" or cls in _RNN_GATES:
            return rank - 1
        if "data_format" in spec.config and cls != "Flatten":
            return _channel_axis(spec, rank)
        if cls.startswith(("Cropping", "UpSampling", "ZeroPadding", "SpatialDropout")):
            return rank - 1  # the 1D ones have no data_format: channels last
        return None

    def _source_outputs(self, g, node, spec, source):
        _, deleted = source
        self._edit(spec)[1] = deleted
        outs = {}
        for index, shape in enumerate(g.nodes[node]["output_shapes"]):
            axis = _channel_axis(spec, len(shape))
            outs[index] = _Del(axis, deleted, shape[axis])
        return outs

    def _merge(self, g, node, spec, ins):
        present = [d for *_, d in ins.values() if d is not None]
        target = present[0]
        for d in present[1:]:
            if d.axis != target.axis:
                raise TiedChannelsError(f"layer '{spec.name}' ({spec.class_name}) receives "
                                        "channel deletions on different axes")
            target = target.union(d)
        for producer, index, d in ins.values():
            if d != target:
                self.requests.append((g, producer, index, target, node))
        return {0: target}

    def _concat_on(self, g, spec, ins):
        rank = len(g.nodes[next(iter(ins.values()))[0]]["output_shapes"][0])
        axis = spec.config.get("axis", -1) % rank
        return any(d is not None and d.axis == axis for *_, d in ins.values())

    def _concat(self, g, spec, ins):
        offset, indices, axis = 0, [], None
        for slot in sorted(ins):
            producer, index, d = ins[slot]
            pshape = g.nodes[producer]["output_shapes"]
            if pshape is None:
                raise UnsupportedLayerError(f"layer '{spec.name}' (Concatenate): the width of "
                                            f"its input from '{producer}' is unknown")
            width = pshape[index][spec.config.get("axis", -1) % len(pshape[index])]
            if d is not None:
                axis = d.axis
                indices.extend(offset + c for c in d.indices)
            offset += width
        return {0: _Del(axis, tuple(indices), offset)}

    def _flatten(self, g, spec, prod, index, d):
        in_shape = g.nodes[prod]["output_shapes"][index][1:]
        if any(s is None for s in in_shape):
            raise UnsupportedLayerError(f"layer '{spec.name}' (Flatten): its input shape "
                                        f"{in_shape} is not fully known")
        mask = np.zeros(in_shape, bool)
        sel = [slice(None)] * len(in_shape)
        sel[d.axis - 1] = list(d.indices)
        mask[tuple(sel)] = True
        if spec.config.get("data_format") == "channels_first" and len(in_shape) > 1:
            mask = np.transpose(mask, (*range(1, len(in_shape)), 0))
        flat = mask.reshape(-1)
        return _Del(1, tuple(int(i) for i in np.flatnonzero(flat)), flat.size)

    def _nested(self, g, node, spec, ins):
        sub = spec.subgraph
        args, kwargs = g.nodes[node]["call_args"]
        slots = [x for x in keras.tree.flatten(args) if isinstance(x, Slot)]
        inputs = {}
        for sub_input, slot in zip(sub.graph["inputs"], slots):
            d = ins[slot.index][2]
            if d is not None:
                inputs[sub_input] = d
                self.nested_inputs.append((sub, sub_input, d))
        calls = [n for n, data in g.nodes(data=True) if data.get("spec") is spec]
        if inputs and len(calls) > 1:
            raise TiedChannelsError(
                f"nested model '{spec.name}' is called {len(calls)} times; deleting channels "
                "of one of its inputs would change every call: inline it first")
        return self._forward(sub, inputs)

    # --------------------------------------------------------------------- upstream
    def _request(self, g, node, index, wanted, by):
        """Make tensor `index` of `node` lose `wanted` channels, by pruning what makes them."""
        data = g.nodes[node]
        spec = data["spec"]
        asked = g.nodes[by]["spec"].name if g.nodes[by].get("spec") is not None else by
        why = (f"channels {list(wanted.indices)} deleted at layer '{asked}' must be deleted on "
               f"every input of it, including the one from '{node}'")
        if data["kind"] == "input":
            raise TiedChannelsError(f"{why}; but '{node}' is an input of model "
                                    f"'{g.graph['name']}', whose channels cannot be deleted")
        cls = spec.class_name
        if spec.subgraph is not None:
            sub = spec.subgraph
            out = sub.graph["outputs"][index]
            ((u, _, e),) = sub.in_edges(out, data=True)
            return self._request(sub, u, e["tensor_index"], wanted, u)
        if cls in _SOURCES:
            shape = data["output_shapes"][index]
            if _channel_axis(spec, len(shape)) != wanted.axis:
                raise TiedChannelsError(f"{why}; but '{node}' ({cls}) has its channels on "
                                        f"axis {_channel_axis(spec, len(shape))}")
            old = self.sources.get(id(spec), (spec, ()))[1]
            merged = tuple(sorted(set(old) | set(wanted.indices)))
            if len(merged) >= wanted.width:
                raise ChannelIndexError(f"{why}; that deletes every channel of '{spec.name}'")
            self.sources[id(spec)] = (spec, merged)
            return
        if cls in _MERGES or cls in _PASSTHROUGH:
            for u, _, e in g.in_edges(node, data=True):
                self._request(g, u, e["tensor_index"], wanted, by)
            return
        if cls in _DEPTHWISE:
            m = int(spec.config.get("depth_multiplier", 1))
            inputs = sorted({c // m for c in wanted.indices})
            if any(c * m + k not in wanted.indices for c in inputs for k in range(m)):
                raise TiedChannelsError(f"{why}; but '{spec.name}' (DepthwiseConv, "
                                        f"depth_multiplier={m}) cannot lose part of the copies "
                                        "of one input channel")
            ((u, _, e),) = g.in_edges(node, data=True)
            return self._request(g, u, e["tensor_index"],
                                 _Del(wanted.axis, tuple(inputs), wanted.width // m), by)
        if cls == "Concatenate":
            offset = 0
            for u, _, e in sorted(g.in_edges(node, data=True), key=lambda t: t[2]["slot"]):
                width = g.nodes[u]["output_shapes"][e["tensor_index"]][wanted.axis]
                part = tuple(c - offset for c in wanted.indices if offset <= c < offset + width)
                if part:
                    self._request(g, u, e["tensor_index"], _Del(wanted.axis, part, width), by)
                offset += width
            return
        raise TiedChannelsError(f"{why}; but '{spec.name}' ({cls}) does not own channels "
                                "surgery can delete")

    # --------------------------------------------------------------------- applying
    def apply(self):
        changes = []
        for spec, out in self.edits.values():
            in_dels = self.calls.get(id(spec), [])
            given = [d for d in in_dels if d is not None]
            if given and _source_weights(spec) and any(d != given[0] for d in in_dels):
                raise TiedChannelsError(
                    f"layer '{spec.name}' ({spec.class_name}) is shared: its {len(in_dels)} "
                    f"calls would lose different input channels "
                    f"({[list(d.indices) if d else [] for d in in_dels]}); a shared layer's "
                    "weights must lose the same channels on every call")
            d_in = given[0].indices if given else ()
            detail = _prune_spec(spec, d_in, out or ())
            if detail:
                changes.append(Change(spec.name, "pruned", detail))
        for g, node in self.changed_nodes:
            g.nodes[node]["output_shapes"] = None
        for g, node, d in self.nested_inputs:  # a nested model's Input takes the new width
            spec = g.nodes[node]["spec"]
            shape = list(spec.config["batch_shape"])
            shape[d.axis] = d.width - len(d.indices)
            spec.config["batch_shape"] = tuple(shape)
            g.nodes[node]["output_shapes"] = [tuple(shape)]
        for g, node, d in self.outputs:
            ((u, _, e),) = g.in_edges(node, data=True)
            shape = list(g.nodes[node]["output_shapes"][0])
            shape[d.axis] = d.width - len(d.indices)
            g.nodes[node]["output_shapes"] = [tuple(shape)]
        return changes


def _gate_columns(units, gates, deleted):
    return [g * units + d for g in range(gates) for d in deleted]


def _prune_spec(spec, d_in, d_out) -> str:
    """Set `spec.weights` (and its width in the config) for input channels `d_in` and output
    channels `d_out` deleted; return what was done, or "" for a layer without weights."""
    cls = spec.class_name
    w = _source_weights(spec)
    new = {}
    if cls not in _SOURCES or cls in _RNN_GATES or cls.startswith("SeparableConv") \
            or cls.endswith("Transpose"):
        if kernel_state.mode_of(spec) or getattr(spec.source, "lora_enabled", False):
            raise UnsupportedLayerError(
                f"cannot delete channels of layer '{spec.name}' ({cls}): it is quantized or "
                "holds LoRA adapters, which surgery edits only on Dense and Conv kernels")

    def cut(label, idx, axis):
        if label in w and len(idx):
            new[label] = np.delete(new.get(label, w[label]), list(idx), axis=axis)

    if cls in _RNN_GATES:
        gates, units = _RNN_GATES[cls], int(spec.config["units"])
        cut("kernel", d_in, 0)
        cols = _gate_columns(units, gates, d_out)
        cut("kernel", cols, -1)
        cut("recurrent_kernel", cols, -1)
        cut("recurrent_kernel", d_out, 0)
        cut("bias", cols, -1)
    elif cls.startswith("SeparableConv"):
        m = int(spec.config.get("depth_multiplier", 1))
        cut("depthwise_kernel", d_in, -2)
        cut("pointwise_kernel", [c * m + k for c in d_in for k in range(m)], -2)
        cut("pointwise_kernel", d_out, -1)
        cut("bias", d_out, 0)
    elif cls in _DEPTHWISE:
        m = int(spec.config.get("depth_multiplier", 1))
        cut("kernel", d_in, -2)
        cut("bias", [c * m + k for c in d_in for k in range(m)], 0)
    elif cls.endswith("Transpose"):
        cut("kernel", d_in, -1)
        cut("kernel", d_out, -2)
        cut("bias", d_out, 0)
    elif cls in _SOURCES:  # Dense, ConvND; quantized or with LoRA too (kernel_state)
        if int(spec.config.get("groups", 1)) != 1:
            raise UnsupportedLayerError(f"layer '{spec.name}' ({cls}) has groups="
                                        f"{spec.config['groups']}; grouped kernels are not pruned")
        why = kernel_state.refusal(spec, w, d_in=d_in)
        if why:
            raise UnsupportedLayerError(f"cannot delete channels of layer '{spec.name}' ({cls}): "
                                        f"{why}")
        new.update(kernel_state.deleted(spec, w, d_in, d_out))
    elif cls in ("BatchNormalization", "LayerNormalization"):
        for label in ("gamma", "beta", "moving_mean", "moving_variance"):
            cut(label, d_in, 0)
    if d_out:
        key = "units" if "units" in spec.config else "filters"
        spec.config[key] = int(spec.config[key]) - len(d_out)
    if new:
        spec.weights = {**(spec.weights or {}), **new}
    parts = []
    if d_in:
        parts.append(f"input channels {list(d_in)} deleted")
    if d_out:
        parts.append(f"output channels {list(d_out)} deleted")
    return "; ".join(parts) if (new or d_out) else ""
