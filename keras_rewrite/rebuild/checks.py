"""Checks of the rebuild: the rebuilt model must produce the original's output shapes, and a
layer whose weights a pass promised to carry must still take what it receives.

`input_text` says what a layer received and what it had in the original model: the rebuild's
errors (a layer that cannot be called on its new input) use it too."""
from __future__ import annotations

from keras_rewrite.errors import ShapeMismatchError, WeightTransferError
from keras_rewrite.graph.schema import topological_order


def check_output_shapes(graph, model, rebuilt_shapes) -> None:
    """Raise ShapeMismatchError unless `model`'s outputs have the shapes recorded in `graph`.

    The error names the first layer, in topological order, whose rebuilt output shape differs
    from the original's (nodes a pass marked with ``output_shapes=None`` are not compared).
    """
    known = [graph.nodes[o]["output_shapes"] is not None for o in graph.graph["outputs"]]
    expected = [graph.nodes[o]["output_shapes"][0] for o, k in zip(graph.graph["outputs"], known)
                if k]
    received = [tuple(t.shape) for t, k in zip(model.outputs, known) if k]
    if expected == received:  # outputs a pass marked unknown (output_shapes=None) not compared
        return
    for node_id in topological_order(graph):
        data = graph.nodes[node_id]
        original = data["output_shapes"]
        rebuilt = rebuilt_shapes.get(node_id)
        if data["kind"] in ("layer", "op") and original is not None and rebuilt != original:
            raise ShapeMismatchError(
                f"layer '{data['spec'].name}' ({data['spec'].class_name}) changed its output "
                f"shape: expected {_fmt(original)}, received {_fmt(rebuilt)}; the model's "
                f"outputs changed from {_fmt(expected)} to {_fmt(received)}",
                layer=data["spec"].name, expected=original, received=rebuilt)
    raise ShapeMismatchError(
        f"the model's output shapes changed: expected {_fmt(expected)}, received "
        f"{_fmt(received)}", expected=expected, received=received)


def _fmt(shapes):
    if shapes is None:
        return "unknown"
    return ", ".join(str(tuple(s)) for s in shapes)


def check_weights_fit(spec, record, inputs, passes) -> None:
    """Raise when a layer whose weights `passes` promise to carry (the graph's
    ``weights_must_fit``) did not keep them all, per its `LayerWeights` `record`.

    ShapeMismatchError when they would change shape because of what the layer now receives
    (`inputs`, as for `input_text`: Flatten -> Dense on a new input shape), naming the layer,
    the shape received and from where, and the shape it had; WeightTransferError otherwise
    (a weight whose dtype would change).
    """
    misfits = [(name, why) for name, why in record.new
               if why.startswith(("shape changed", "dtype changed"))] + list(record.dropped)
    if not misfits:
        return
    weights = "; ".join(f"{name}: {why}" for name, why in misfits[:3])
    promise = f"{', '.join(passes)} carries every weight"
    if not all(why.startswith("shape changed") for _, why in misfits):
        raise WeightTransferError(f"layer '{spec.name}' ({spec.class_name}) would not keep its "
                                  f"weights ({weights}); {promise}")
    inputs = inputs or []
    received = [shape for _, shape, _ in inputs]
    original = [before for _, _, before in inputs]
    built = original_input_shape(spec)
    expected = original if inputs and all(b is not None for b in original) else (
        [built] if built is not None else None)
    raise ShapeMismatchError(
        f"{input_text(spec, inputs)} ({weights}); {promise}, so '{spec.name}' must receive "
        f"the shape its weights were made for", layer=spec.name, expected=expected,
        received=received)


def input_text(spec, inputs) -> str:
    """What layer `spec` received and what it had in the original model, for errors:
    ``layer 'dense' (Dense) cannot take input shape (None, 256) from 'flatten': expected
    (None, 144), the input shape the original layer was built for``.

    `inputs` is ``[(producer node id, shape received, the producer's recorded output shape in
    the original model or None)]`` in slot order; where a recorded shape is unknown (a pass
    marked it so), the shape the original layer was built for stands for it.
    """
    received = [shape for _, shape, _ in inputs]
    producers = [p for p, _, _ in inputs if p is not None]
    original = [before for _, _, before in inputs]
    if inputs and all(b is not None for b in original):
        expected, why = original, "its input shape in the original model"
    else:
        built = original_input_shape(spec)
        expected, why = ([built], "the input shape the original layer was built for") \
            if built is not None else (None, "")
    origin = f" from {', '.join(repr(p) for p in producers)}" if producers else ""
    if expected is not None and [tuple(e) for e in expected] == [tuple(r) for r in received]:
        return (f"layer '{spec.name}' ({spec.class_name}) could not be called on input shape "
                f"{_fmt_inputs(received)}{origin}, {why}")
    text = f"layer '{spec.name}' ({spec.class_name}) cannot take input shape " \
           f"{_fmt_inputs(received)}{origin}"
    if expected is not None:
        text += f": expected {_fmt_inputs(expected)}, {why}"
    return text


def original_input_shape(spec):
    """The input shape the original layer was built for (its build config, or else its input
    if it was called once), or None."""
    shape = None
    try:
        shape = (spec.source.get_build_config() or {}).get("input_shape")
        if shape is None:
            shape = spec.source.input.shape  # raises for a layer called several times
    except Exception:
        pass
    if isinstance(shape, (list, tuple)) and all(d is None or isinstance(d, int) for d in shape):
        return tuple(shape)
    return None


def _fmt_inputs(shapes) -> str:
    shapes = [tuple(s) for s in shapes]
    return str(shapes[0]) if len(shapes) == 1 else ", ".join(str(s) for s in shapes)
