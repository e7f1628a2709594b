"""`ReplaceBlock`: replace the linear run of layers from `first` to `last` (each feeding only
the next; see `keras_rewrite.graph.edit.check_linear_run`) by one layer or a small keras
Model (nested, its weights kept). The run may be inside a nested model (`first` found at any
depth, or as a path "outer/inner"); `last` must be in the same model. The consumers of
`last` read the new block's output: when its shape differs from `last`'s, each consumer must
still take it with its own weights, or the edit is refused naming it."""
from __future__ import annotations

import keras

from keras_rewrite import _keras
from keras_rewrite.rebuild import layer_copy
from keras_rewrite.errors import GraphError
from keras_rewrite.graph.edit import check_linear_run
from keras_rewrite.graph.schema import Slot
from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.surgery._common import locate, new_spec
from keras_rewrite.surgery.errors import SurgeryError, SurgeryShapeError
from keras_rewrite.surgery.layers import _check_consumers, _mark_nested, _unmark


def _run_between(g, first, last, names):
    run, node = [first], first
    while node != last:
        users = sorted({v for _, v in g.out_edges(node)})
        if len(users) != 1 or g.nodes[users[0]]["kind"] == "output" or len(run) > len(g):
            raise SurgeryError(
                f"replace_block(first={names[0]!r}, last={names[1]!r}): expected a linear run "
                f"from '{names[0]}' to '{names[1]}'; the output of '{node}' goes to "
                f"{users or 'nothing'}")
        node = users[0]
        run.append(node)
    return run


def _output_shape(spec, obj, in_shape):
    if spec.subgraph is not None:
        return tuple(obj.compute_output_shape(in_shape))
    layer = _keras.new_operation(spec.cls, spec.config, spec.source)
    with layer_copy.zero_initializers(layer):
        return tuple(layer(keras.KerasTensor(in_shape)).shape)


class ReplaceBlock(Pass):
    """Replace the layers from `first` to `last` (a linear run) by `new`: a layer, a keras
    Model, or a serialized config of one (see the module docstring)."""

    short_name = "replace_block"
    summary = "replaces a linear run of layers by one layer or a small model"
    structural = True
    outputs_unchanged = False

    def __init__(self, first, last, new):
        self.first, self.last, self.new = first, last, new

    def run(self, graph) -> PassResult:
        g, first = locate(graph, self.first, inline=False, argument="first")
        last_g, last = locate(graph, self.last, inline=False, argument="last")
        names = (self.first, self.last)
        if last_g is not g:
            raise SurgeryError(f"replace_block: first={self.first!r} is in model "
                               f"'{g.graph['name']}', last={self.last!r} in model "
                               f"'{last_g.graph['name']}'; expected both in one model")
        run = _run_between(g, first, last, names)
        try:
            check_linear_run(g, run)
        except GraphError as exc:
            raise SurgeryError(f"replace_block(first={self.first!r}, last={self.last!r}): "
                               f"{exc}") from None
        ((producer, _, in_edge),) = g.in_edges(first, data=True)
        in_shapes = g.nodes[producer]["output_shapes"]
        in_shape = None if in_shapes is None else tuple(in_shapes[in_edge["tensor_index"]])
        old_shapes = g.nodes[last]["output_shapes"]
        old_shape = None if old_shapes is None else tuple(old_shapes[0])
        removed = [g.nodes[n]["spec"].name for n in run]
        consumers = list(g.out_edges(last, data=True))
        spec = new_spec(graph, self.new, "new")
        new_shape = None
        if in_shape is not None:
            try:
                new_shape = _output_shape(spec, self.new, in_shape)
            except Exception as exc:
                raise SurgeryShapeError(
                    f"replace_block: new block '{spec.name}' ({spec.class_name}) cannot take "
                    f"the input of '{removed[0]}', shape {in_shape}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200]}") from None
        _mark_nested(graph)
        try:
            _check_consumers(g, [(v, e["slot"]) for _, v, e in consumers], new_shape,
                             old_shape, f"replacing layers {removed} by '{spec.name}'")
        finally:
            _unmark(graph)
        g.remove_nodes_from(run)
        g.add_node(spec.name, kind="layer", spec=spec, call_args=((Slot(0),), {}),
                   output_shapes=None if new_shape is None else [new_shape], meta={})
        g.add_edge(producer, spec.name, slot=0, tensor_index=in_edge["tensor_index"])
        for _, v, e in consumers:
            g.add_edge(spec.name, v, **{**e, "tensor_index": 0})
        changes = [Change(name, "deleted", f"replaced by '{spec.name}'") for name in removed]
        changes.append(Change(spec.name, "inserted", f"in place of {removed}"))
        return PassResult(self.name, True, changes, outputs_unchanged=False)
