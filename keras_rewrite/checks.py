"""Checks run after rebuilding: the rebuilt model must produce the original's output shapes."""
from __future__ import annotations

from .errors import ShapeMismatchError
from .graph import topological_order


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
