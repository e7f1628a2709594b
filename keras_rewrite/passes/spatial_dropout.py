"""`SpatialDropout`: turn Dropout on feature maps into SpatialDropout1D/2D/3D.

Why: neighbouring pixels of a feature map are strongly correlated, so element-wise dropout on
them barely regularizes (and before max pooling, pooling just picks the next-largest pixel);
SpatialDropout drops whole channels instead (seed question 001, ../shared/seeds/).

The math it relies on: in inference mode Dropout and SpatialDropout are both the identity, so
outputs are unchanged. In training mode SpatialDropout2D with channels_last is
``Dropout(noise_shape=(batch, 1, 1, C))``: one Bernoulli draw per sample and channel, the kept
values scaled by ``1 / (1 - rate)`` (with the same seed, the very same mask).

Which Dropout layers (exactly `keras.layers.Dropout`; SpatialDropout already subclasses it):

- input of rank 3, 4 or 5 (batch included) -> SpatialDropout1D, 2D or 3D, keeping name, rate,
  seed and dtype. The input rank is read from the producer node's ``output_shapes``.
- data_format: channels_first if the nearest layer upstream that has a ``data_format`` (looking
  back through layers that keep the shape, such as BatchNormalization, activations or Add) says
  so, otherwise channels_last. SpatialDropout1D only drops channels_last feature maps, so a
  channels_first rank-3 input is left alone.
- left alone, with the reason in the report: rank 2 (after Flatten or Dense there are no
  feature maps), an own ``noise_shape`` (e.g. EfficientNet's drop-connect,
  ``noise_shape=(None, 1, 1, 1)``), an unknown rank, or a shared layer called on inputs that
  disagree. A ``noise_shape`` that already drops whole channels is converted.

Dropout layers have no weights (their seed generator's state is not one of `layer.weights`),
so the rebuilt SpatialDropout starts its random stream from its seed, as a fresh layer would.

It is a `keras_rewrite.passes.rules.Rule` on one call (a shared layer is decided once, over all its
calls); `check` works out the new class, `rewrite` returns its spec.
"""
from __future__ import annotations

from keras import layers

from keras_rewrite.passes import live
from keras_rewrite.graph.schema import to_graph
from keras_rewrite.passes.rules import L, Match, Refusal, Rule
from keras_rewrite.graph.view import Node, View
from keras_rewrite.passes.base import Change, PassResult

__all__ = ["SpatialDropout"]

_SPATIAL = {3: layers.SpatialDropout1D, 4: layers.SpatialDropout2D, 5: layers.SpatialDropout3D}
_FORMATS = ("channels_last", "channels_first")


def _channel_noise_shape(shape, data_format) -> tuple:
    """The Dropout noise_shape that drops whole channels of a tensor of `shape`."""
    rank = len(shape)
    if data_format == "channels_first":
        return (None, shape[1]) + (1,) * (rank - 2)
    return (None,) + (1,) * (rank - 2) + (shape[-1],)


def _same_noise_shape(a, b) -> bool:
    """Equal up to None, which Keras fills in from the input (batch, or a channel count)."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _input_shape(node: Node):
    """Shape of the tensor in the first slot of a call, or None if unknown."""
    inputs = node.inputs
    if not inputs:
        return None
    producer, index = inputs[0]
    shapes = producer.output_shapes
    if shapes is None or index >= len(shapes):
        return None
    return tuple(shapes[index])


def _upstream_data_format(node: Node):
    """(data_format, layer name) of the nearest layer upstream that declares one, looking
    back only through layers whose output has the shape of their first input (BN,
    activations, Add, Dropout...); (None, None) if there is none."""
    current = node
    while current.inputs:
        producer = current.inputs[0][0]
        if producer.kind not in ("layer", "op") or producer.spec is None:
            return None, None
        data_format = producer.config.get("data_format")
        if data_format in _FORMATS:
            return data_format, producer.name
        shapes = producer.output_shapes
        if shapes is None or len(shapes) != 1 or _input_shape(producer) != tuple(shapes[0]):
            return None, None
        current = producer
    return None, None


def _decide_call(node: Node):
    """A reason string to leave this call alone, or (rank, data_format, noise_shape,
    already_spatial, where the data_format came from)."""
    shape = _input_shape(node)
    if shape is None:
        return "input rank unknown (no recorded shape for its input)"
    rank = len(shape)
    if rank not in _SPATIAL:
        why = " (no feature maps, e.g. after Flatten or Dense)" if rank == 2 else ""
        return f"input has rank {rank}{why}; SpatialDropout needs rank 3, 4 or 5"
    upstream, upstream_origin = _upstream_data_format(node)
    own = node.config.get("noise_shape")
    if own is not None:
        own = tuple(own)
        # The upstream data_format when known. Otherwise channels_last, then channels_first,
        # but not for a noise_shape of all ones (per-sample drop-connect): on a map with one
        # row, (None, 1, 1, 1) equals the channels_first channel shape.
        per_sample = all(d == 1 for d in own[1:])
        formats = ([upstream] if upstream is not None
                   else ["channels_last"] if per_sample else list(_FORMATS))
        for data_format in formats:
            target = _channel_noise_shape(shape, data_format)
            if _same_noise_shape(own, target):
                if rank == 3 and data_format == "channels_first":
                    break
                return (rank, data_format, target, True,
                        f"its noise_shape={own} already drops whole channels")
        return (f"has its own noise_shape={own} (e.g. drop-connect), which is not "
                "whole-channel dropout")
    data_format, origin = upstream, upstream_origin
    if data_format is None:
        data_format, origin = "channels_last", "default channels_last"
    else:
        origin = f"data_format {data_format} from '{origin}'"
    if rank == 3 and data_format == "channels_first":
        return ("input is channels_first (from upstream data_format); SpatialDropout1D "
                "only drops channels_last feature maps")
    return rank, data_format, _channel_noise_shape(shape, data_format), False, origin


class SpatialDropout(Rule):
    """Replace Dropout on rank 3/4/5 feature maps with SpatialDropout1D/2D/3D.

    See the module docstring for which layers change and why others are left alone; every
    Dropout gets one `Change` in the result ("replaced" or "skipped" with the reason).
    Inference outputs are unchanged. Running it twice is the same as running it once.

    Example:
        >>> import keras_rewrite
        >>> from keras_rewrite.passes import SpatialDropout
        >>> result = keras_rewrite.rewrite_with_report(model, [SpatialDropout()])  # doctest: +SKIP
        >>> result.report.passes[0].changed_layers  # doctest: +SKIP
        ['dropout', 'dropout_1']
    """

    short_name = "spatial_dropout"
    summary = "Dropout on rank 3/4/5 feature maps becomes SpatialDropout1D/2D/3D (rate, seed, name kept)"
    outputs_unchanged = True
    structural = False

    # Exactly Dropout: SpatialDropout1D/2D/3D subclass it.
    pattern = L(layers.Dropout, where=lambda node: node.layer_class is layers.Dropout)

    def get_config(self) -> dict:
        return {}

    def check(self, match: Match):
        (node,) = match
        calls = node.calls
        verdicts = [_decide_call(call) for call in calls]
        # Calls agree when they need the same layer; where the data_format was found may differ.
        if len({v if isinstance(v, str) else v[:4] for v in verdicts}) > 1:
            described = "; ".join(
                f"call '{call.id}': " + (v if isinstance(v, str) else
                                         f"{_SPATIAL[v[0]].__name__}, {v[1]}")
                for call, v in zip(calls, verdicts))
            return Refusal(f"shared layer whose calls need different layers ({described})")
        if isinstance(verdicts[0], str):
            return Refusal(verdicts[0])
        match.plan = verdicts[0]
        match.note = f"rate={node.config.get('rate')}, {verdicts[0][4]}"

    def rewrite(self, match: Match):
        (node,), (rank, data_format, *_) = match, match.plan
        new_cls = _SPATIAL[rank]
        config = {k: node.config[k] for k in ("name", "rate", "seed", "dtype")
                  if k in node.config}
        if new_cls is not layers.SpatialDropout1D:  # 1D has no data_format argument
            config["data_format"] = data_format
        # `source` stays, so weights (none today) would still be matched by name.
        return node.spec.replace(cls=new_cls, config=config)

    def apply_in_place(self, model) -> PassResult:
        """Make each eligible Dropout of a live model drop whole channels, in place.

        A live layer cannot change class, so the Dropout keeps its class and gets the
        ``noise_shape`` that drops whole channels (``(None, 1, 1, C)`` for channels_last
        images), which gives the same masks as SpatialDropout2D with the same seed. Use
        `keras_rewrite.rewrite()` to get real SpatialDropout layers. A train function traced
        before this only sees it once rebuilt (``model.make_train_function(force=True)``).

        Args:
            model: a built Functional or Sequential model; it is modified.

        Returns:
            The `PassResult`, one Change per Dropout ("set_noise_shape" or "skipped").
        """
        result = PassResult(self.name, modified=False, outputs_unchanged=True)
        for match in self.find(View(to_graph(model))):
            name = match.names[0]
            if match.refused:
                result.changes.append(Change(name, "skipped", match.reason))
                continue
            rank, _, noise_shape, already_spatial, origin = match.plan
            if already_spatial:
                result.changes.append(Change(
                    name, "skipped", f"already drops whole channels ({origin})"))
                continue
            live.set_live_noise_shape(match[0].spec.source, noise_shape)
            result.changes.append(Change(
                name, "set_noise_shape",
                f"noise_shape={noise_shape}: drops whole channels like "
                f"{_SPATIAL[rank].__name__} ({origin}); the class stays Dropout, since a "
                "live layer cannot change class (keras_rewrite.rewrite() swaps it)"))
            result.modified = True
        return result
