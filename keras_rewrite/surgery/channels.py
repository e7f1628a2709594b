"""Model surgery on a built Keras 3 model: delete channels, delete, insert or replace a layer.

Each operation is a pass (`DeleteChannels`, `DeleteLayer`, `InsertLayer`, `ReplaceLayer`)
that edits the graph of `keras_rewrite.to_graph`, and a function of the same name that runs
it through `keras_rewrite.rewrite` and returns a NEW model (layer names and classes kept,
every weight that still fits carried over). The original model is never touched.

    from keras_rewrite import surgery

    pruned = surgery.delete_channels(model, "conv1", [0, 3])
    pruned = surgery.delete_channels(model, "conv1",
                                     surgery.l1_norm_channels(model, "conv1", 0.3))
    pruned = keras_rewrite.rewrite(model, [surgery.DeleteChannels("conv1", [0])])

`layer` is a Layer object or a layer name, found anywhere in the model (nested models too).
Every refusal is a `SurgeryError` (a `RewriteError`) naming the layer and, for channels, the
index: see the error classes below.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_rewrite import _keras
from keras_rewrite.graph.edit import insert_after, remove_node
from keras_rewrite.errors import PassError, RewriteError
from keras_rewrite.graph.schema import LayerSpec, Slot, fresh_name, iter_graphs, map_structure, topological_order
from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult

__all__ = ["delete_channels", "delete_layer", "insert_layer", "replace_layer",
           "l1_norm_channels", "apoz_channels", "DeleteChannels", "DeleteLayer", "InsertLayer",
           "ReplaceLayer", "SurgeryError", "LayerNotFoundError", "ChannelIndexError",
           "UnsupportedLayerError", "TiedChannelsError", "SurgeryShapeError"]


# ------------------------------------------------------------------------------------ errors


class SurgeryError(RewriteError, ValueError):
    """A surgery request that cannot be carried out; the message names the layer."""


class LayerNotFoundError(SurgeryError):
    """No layer of that name (or that object) in the model."""


class ChannelIndexError(SurgeryError):
    """A channel index out of range, no channel given, or every channel of a layer deleted."""


class UnsupportedLayerError(SurgeryError):
    """A layer kind the operation cannot act on (or propagate channel deletions through)."""


class TiedChannelsError(SurgeryError):
    """Channels tied to others (a residual merge, a shared layer) that cannot be deleted too."""


class SurgeryShapeError(SurgeryError):
    """After the edit a consumer can no longer take the shape it receives."""


# ----------------------------------------------------------------------- the functional API


def delete_channels(model, layer, channels) -> keras.Model:
    """A copy of `model` without output `channels` of `layer` (see `DeleteChannels`)."""
    return _run(model, DeleteChannels(layer, channels))


def delete_layer(model, layer) -> keras.Model:
    """A copy of `model` without `layer`; its consumers take its input (see `DeleteLayer`)."""
    return _run(model, DeleteLayer(layer))


def insert_layer(model, layer, new_layer) -> keras.Model:
    """A copy of `model` with `new_layer` called on `layer`'s output (see `InsertLayer`)."""
    return _run(model, InsertLayer(layer, new_layer))


def replace_layer(model, layer, new_layer) -> keras.Model:
    """A copy of `model` with `new_layer` in `layer`'s place (see `ReplaceLayer`)."""
    return _run(model, ReplaceLayer(layer, new_layer))


def _run(model, surgery_pass):
    from keras_rewrite.rebuild.pipeline import rewrite_with_report

    try:
        return rewrite_with_report(model, [surgery_pass]).model
    except PassError as exc:  # the pass manager wraps what a pass raises: give ours back
        if isinstance(exc.__cause__, SurgeryError):
            raise exc.__cause__ from None
        raise


# ------------------------------------------------------------------------- finding a layer


def _layer_name(layer) -> str:
    return layer if isinstance(layer, str) else layer.name


def _calls_of(graph, layer):
    """(spec, [(graph, node id), ...]): every call of `layer` (a name or Layer), nested too."""
    name = _layer_name(layer)
    spec, calls = None, []
    for g in iter_graphs(graph):
        for node_id, data in g.nodes(data=True):
            s = data.get("spec")
            if data["kind"] != "layer" or s is None:
                continue
            if (s.source is layer) if not isinstance(layer, str) else (s.name == name):
                spec = s
                calls.append((g, node_id))
    if spec is None and not isinstance(layer, str):  # a Layer object of the same name
        return _calls_of(graph, name)
    if spec is None:
        known = sorted({d["spec"].name for g in iter_graphs(graph)
                        for _, d in g.nodes(data=True) if d["kind"] == "layer"})
        raise LayerNotFoundError(f"model '{graph.graph['name']}' has no layer '{name}'; "
                                 f"its layers are {known[:20]}")
    return spec, calls


def _source_weights(spec) -> dict:
    """{weight label: numpy array} of the original layer (labels as in the report)."""
    if spec.source is None:
        return {}
    out = {}
    for (name, k), v in zip(_keras.variable_key_list(spec.source), spec.source.weights):
        out[name if k == 0 else f"{name}#{k}"] = np.asarray(keras.ops.convert_to_numpy(v))
    return out


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


_SOURCES = ("Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
            "Conv3DTranspose", "SeparableConv1D", "SeparableConv2D", "LSTM", "GRU", "SimpleRNN")
_DEPTHWISE = ("DepthwiseConv1D", "DepthwiseConv2D")
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
    elif cls in _SOURCES:  # Dense, ConvND
        if int(spec.config.get("groups", 1)) != 1:
            raise UnsupportedLayerError(f"layer '{spec.name}' ({cls}) has groups="
                                        f"{spec.config['groups']}; grouped kernels are not pruned")
        cut("kernel", d_in, -2)
        cut("kernel", d_out, -1)
        cut("bias", d_out, 0)
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


# =========================================================== delete / insert / replace a layer
#
# The three rewire one tensor: its consumers read another tensor (delete), a new layer's
# output (insert) or a new layer's output in place of the old one (replace). When the tensor's
# shape changes, every consumer is re-created and called on the new shape first: it must
# still build the same weights and give its old output shape, or the edit is refused naming it.


def _tensor_shape(g, node, index=0):
    shapes = g.nodes[node]["output_shapes"]
    return None if shapes is None else tuple(shapes[index])


def _call_on_shapes(g, node, spec, override=None):
    """Re-create `spec` and call it on placeholders of its inputs' shapes (`override`: slot ->
    shape). Returns (output shapes, layer), or None when an input shape is unknown."""
    override = override or {}
    tensors = {}
    for u, _, e in g.in_edges(node, data=True):
        shape = override.get(e["slot"], _tensor_shape(g, u, e["tensor_index"]))
        if shape is None:
            return None
        tensors[e["slot"]] = keras.KerasTensor(shape)
    for slot, shape in override.items():
        tensors.setdefault(slot, keras.KerasTensor(shape))
    args, kwargs = map_structure(g.nodes[node]["call_args"],
                                 lambda x: tensors[x.index] if isinstance(x, Slot) else x)
    layer = _keras.new_operation(spec.cls, spec.config, spec.source)
    with _keras.zero_initializers(layer):
        out = layer(*args, **kwargs)
    return [tuple(t.shape) for t in keras.tree.flatten(out)], layer


def _check_consumers(g, consumers, new_shape, old_shape, what):
    """`consumers` ((node, slot) pairs) now receive `new_shape` instead of `old_shape`."""
    if new_shape is None or old_shape is None or new_shape == old_shape:
        return
    for consumer, slot in consumers:
        data = g.nodes[consumer]
        if data["kind"] == "output":
            if g.graph.get("_nested"):
                raise SurgeryShapeError(f"{what}: the output of nested model "
                                        f"'{g.graph['name']}' would change shape")
            g.nodes[consumer]["output_shapes"] = [new_shape]
            continue
        spec = data["spec"]
        if spec.subgraph is not None or data["kind"] == "op":
            raise SurgeryShapeError(
                f"{what}: consumer '{consumer}' ({spec.class_name}) would receive shape "
                f"{new_shape} instead of {old_shape}, and surgery cannot check a "
                f"{'nested model' if spec.subgraph is not None else 'raw operation'} on it")
        try:
            result = _call_on_shapes(g, consumer, spec, {slot: new_shape})
        except Exception as exc:
            raise SurgeryShapeError(
                f"{what}: consumer '{consumer}' ({spec.class_name}) cannot take shape "
                f"{new_shape} (it took {old_shape}): {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}") from None
        if result is None:
            continue
        shapes, layer = result
        expected = data["output_shapes"]
        if spec.source is not None:
            old_w = [tuple(w.shape) for w in spec.source.weights]
            new_w = [tuple(w.shape) for w in layer.weights]
            if old_w != new_w:
                raise SurgeryShapeError(
                    f"{what}: consumer '{consumer}' ({spec.class_name}) on shape {new_shape} "
                    f"(it took {old_shape}) would need weights of shapes {new_w}; its weights "
                    f"have shapes {old_w}")
        if expected is not None and [tuple(s) for s in expected] != shapes:
            raise SurgeryShapeError(
                f"{what}: consumer '{consumer}' ({spec.class_name}) on shape {new_shape} (it "
                f"took {old_shape}) would give shape {shapes}; expected {list(expected)}")


def _consumers(g, node, index=0):
    return [(v, e["slot"]) for _, v, e in g.out_edges(node, data=True)
            if e["tensor_index"] == index]


def _single_io(spec, g, node, what):
    ins = list(g.in_edges(node, data=True))
    shapes = g.nodes[node]["output_shapes"]
    used = {e["tensor_index"] for _, _, e in g.out_edges(node, data=True)}
    if len(ins) != 1 or (shapes is not None and len(shapes) != 1) or used - {0}:
        raise UnsupportedLayerError(
            f"cannot {what} layer '{spec.name}' ({spec.class_name}): expected one input and "
            f"one output, received {len(ins)} inputs and "
            f"{len(shapes) if shapes is not None else '?'} outputs")
    return ins[0]


def _mark_nested(graph):
    for g in iter_graphs(graph):
        g.graph["_nested"] = g is not graph


def _spec_for_new_layer(graph, layer, name=None, source=None, original_config=None):
    if not isinstance(layer, keras.layers.Layer):
        raise SurgeryError(f"expected a keras Layer instance, received {type(layer).__name__}")
    config = layer.get_config()
    name = name or layer.name
    config["name"] = name
    if source is None and layer.built and layer.weights:
        source, original_config = layer, layer.get_config()
    return LayerSpec(name, type(layer), config, source, original_config=original_config)


class DeleteLayer(Pass):
    """Remove a single-input, single-output layer (every call of it); its consumers take its
    input. Refused (`SurgeryShapeError`, naming the consumer) when a consumer cannot take that
    input's shape with its own weights."""

    def __init__(self, layer):
        self.layer = layer

    def run(self, graph) -> PassResult:
        _mark_nested(graph)
        spec, calls = _calls_of(graph, self.layer)
        for g, node in calls:
            producer, _, edge = _single_io(spec, g, node, "delete")
            _check_consumers(g, _consumers(g, node), _tensor_shape(g, producer,
                                                                    edge["tensor_index"]),
                             _tensor_shape(g, node), f"deleting layer '{spec.name}'")
        for g, node in calls:
            remove_node(g, node)
        _unmark(graph)
        return PassResult(self.name, True, [Change(spec.name, "deleted")],
                          outputs_unchanged=False)


def _unmark(graph):
    for g in iter_graphs(graph):
        g.graph.pop("_nested", None)


class InsertLayer(Pass):
    """Call `new_layer` (a fresh Layer; its own weights if it is built) on `layer`'s output;
    all of `layer`'s consumers read `new_layer`'s output. On a shared layer it is inserted
    after every call (one new layer, shared likewise). Its name is kept unless a layer of
    the model has it (then ``name_1``, ...)."""

    def __init__(self, layer, new_layer):
        self.layer = layer
        self.new_layer = new_layer

    def run(self, graph) -> PassResult:
        _mark_nested(graph)
        spec, calls = _calls_of(graph, self.layer)
        new = _spec_for_new_layer(graph, self.new_layer, fresh_name(graph, self.new_layer.name))
        plans = []
        for g, node in calls:
            shapes = g.nodes[node]["output_shapes"]
            if shapes is not None and len(shapes) != 1:
                raise UnsupportedLayerError(
                    f"cannot insert after layer '{spec.name}' ({spec.class_name}): expected a "
                    f"layer with one output, received {len(shapes)} outputs")
            before = _tensor_shape(g, node)
            after = None
            if before is not None:
                try:
                    after = _call_on_shapes_new(new, before)
                except Exception as exc:
                    raise SurgeryShapeError(
                        f"inserting '{new.name}' ({new.class_name}) after layer '{spec.name}': "
                        f"it cannot take shape {before}: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]}") from None
            _check_consumers(g, _consumers(g, node), after, before,
                             f"inserting '{new.name}' after layer '{spec.name}'")
            plans.append((g, node, after))
        for g, node, after in plans:
            insert_after(g, node, new, output_shapes=None if after is None else [after])
        _unmark(graph)
        return PassResult(self.name, True, [Change(new.name, "inserted",
                                                   f"after '{spec.name}'")],
                          outputs_unchanged=False)


def _call_on_shapes_new(spec, shape):
    layer = _keras.new_operation(spec.cls, spec.config, spec.source)
    with _keras.zero_initializers(layer):
        return tuple(layer(keras.KerasTensor(shape)).shape)


class ReplaceLayer(Pass):
    """Put `new_layer` in `layer`'s place (every call of it). The new spec keeps
    ``source=`` the old layer, so the rebuild carries the old weights to it where names and
    shapes fit; the rest are new (drawn by its initializers). Its name is `new_layer`'s,
    unless another layer of the model has it."""

    def __init__(self, layer, new_layer):
        self.layer = layer
        self.new_layer = new_layer

    def run(self, graph) -> PassResult:
        import networkx as nx

        _mark_nested(graph)
        old, calls = _calls_of(graph, self.layer)
        name = self.new_layer.name
        if name != old.name:
            name = fresh_name(graph, name)
        new = _spec_for_new_layer(graph, self.new_layer, name, source=old.source,
                                  original_config=old.original_config)
        for g, node in calls:
            before = g.nodes[node]["output_shapes"]
            try:
                result = _call_on_shapes(g, node, new)
            except Exception as exc:
                raise SurgeryShapeError(
                    f"replacing layer '{old.name}' by '{new.name}' ({new.class_name}): it "
                    f"cannot take the inputs of '{old.name}': {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200]}") from None
            after = None if result is None else result[0]
            if before is not None and after is not None:
                if len(after) != len(before):
                    raise SurgeryShapeError(
                        f"replacing layer '{old.name}' by '{new.name}': it gives {len(after)} "
                        f"outputs; expected {len(before)}")
                for index, (b, a) in enumerate(zip(before, after)):
                    _check_consumers(g, _consumers(g, node, index), tuple(a), tuple(b),
                                     f"replacing layer '{old.name}' by '{new.name}'")
            g.nodes[node]["spec"] = new
            g.nodes[node]["output_shapes"] = after
        for g, node in calls:
            if node == old.name and new.name != old.name:
                nx.relabel_nodes(g, {node: new.name}, copy=False)
        _unmark(graph)
        return PassResult(self.name, True, [Change(new.name, "replaced",
                                                   f"'{old.name}' ({old.class_name})")],
                          outputs_unchanged=False)


# ======================================================================= choosing channels


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


def _find_layer(model, layer):
    spec, _ = _calls_of(_graph_of(model), layer)
    return spec.source


def _graph_of(model):
    from keras_rewrite.graph.schema import to_graph

    return to_graph(model)


def l1_norm_channels(model, layer, fraction_or_count) -> list[int]:
    """The output channels of `layer` with the smallest L1 norm of their weights, sorted.

    L1 of channel j: sum of |w| over the kernel's slice for j (Dense/Conv: kernel[..., j];
    Transpose: kernel[..., j, :]; SeparableConv: pointwise_kernel[..., j]; DepthwiseConv:
    kernel reshaped to (..., in * multiplier)[..., j]; RNN: the columns of j in every gate
    block of kernel and recurrent_kernel). `fraction_or_count`: a float in (0, 1) (that share
    of the channels, rounded down) or an int.
    """
    source = _find_layer(model, layer)
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
    graph = _graph_of(model)
    spec, calls = _calls_of(graph, layer)
    g, node = calls[0]
    if g is not graph:
        raise UnsupportedLayerError(f"layer '{spec.name}' is inside a nested model; APoZ is "
                                    "measured on layers of the outer model only")
    source = spec.source
    tensor = source.get_output_at(0) if len(source._inbound_nodes) > 1 else source.output
    users = [v for _, v in g.out_edges(node)]
    if len(users) == 1 and g.nodes[users[0]]["kind"] == "layer":
        user = g.nodes[users[0]]["spec"]
        if user.class_name in ("ReLU", "Activation", "LeakyReLU", "ELU", "ThresholdedReLU"):
            tensor = user.source.output
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(inputs, tensor)
    out = np.asarray(probe(x, training=False))
    axis = _channel_axis(spec, out.ndim)
    zeros = np.moveaxis(out == 0, axis, -1).reshape(-1, out.shape[axis]).mean(axis=0)
    n = _count(fraction_or_count, zeros.size, spec.name)
    return sorted(int(i) for i in np.argsort(-zeros, kind="stable")[:n])
