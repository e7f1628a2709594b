"""`SetInputShape`: give a model a new input shape, carrying every weight.

The semantics it relies on: a layer's weights depend on the sizes of its input's feature
dimensions only where its config says so (a Conv2D kernel on the channels, a Dense kernel on
the last axis), never on spatial or sequence sizes. So a model whose spatial or sequence
dimensions change (224x224 -> 160x160, or None: any size) computes the same function on inputs
of the new shape with the same weights; on inputs the original took, its outputs are the
original's.

What the pass does, on the graph only:

- the input's ``batch_shape`` becomes ``(original batch dimension, *shape)``: the batch
  dimension is never part of `shape`, and the rank cannot change (an error names the input);
- every node downstream has its recorded output shapes set to unknown (None): the rebuild
  derives them again and checks nothing against the original's there;
- a nested model called downstream is a Functional that checks its own inputs' shapes, so each
  of its inputs recorded with the changed input's original shape gets the new shape too (the
  usual Input -> augmentation -> base model); its other inputs are left as they are;
- the graph attribute ``weights_must_fit`` names this pass: a layer whose weights would change
  shape (Dense after Flatten) is an error naming it, the input shape it would receive and
  from which layer, and the shape it was built for, never a layer that silently starts
  afresh (see `keras_rewrite.rebuild.rebuilder`). A layer whose config fixes a shape (Reshape to a
  fixed target) fails to be called, and the error says the same.

Example:
    >>> import keras, keras_rewrite
    >>> from keras_rewrite import passes
    >>> inputs = keras.Input((32, 32, 3))
    >>> x = keras.layers.Conv2D(4, 3)(inputs)
    >>> model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    >>> any_size = keras_rewrite.rewrite(model, [passes.SetInputShape((None, None, 3))])
    >>> tuple(any_size.inputs[0].shape)
    (None, None, None, 3)
"""
from __future__ import annotations

import networkx as nx

from keras_rewrite.errors import PassError
from keras_rewrite.passes.base import Change, Pass, PassResult

__all__ = ["SetInputShape"]

_EXAMPLE = "(None, None, 3)"


class SetInputShape(Pass):
    """Set the input shape of a model (batch dimension excluded; None = any size).

    Args:
        shape: the new shape of the model's single input, batch excluded, such as
            ``(None, None, 3)`` or ``(160, 160, 3)``; or ``{input name: shape}`` for a model
            with several inputs (those not named keep their shapes). A list works as a
            tuple, and ``"None"``/``"null"`` as None (TOML has no null).

    Every weight is carried over: a layer that cannot take the new shape with its weights
    (Dense after Flatten) or at all (a Reshape to a fixed target shape) makes the rewrite fail
    with an error naming that layer and the input shape it would receive.
    """

    short_name = "set_input_shape"
    summary = ("gives the model's input(s) a new shape (batch excluded; None = any size), "
               "every weight carried")
    outputs_unchanged = True  # on inputs the original took; declared, each run reports its own
    structural = True

    def __init__(self, shape=None):
        if shape is None:
            self.shape = None
        elif isinstance(shape, dict):
            if not shape:
                raise PassError(f"Expected shape as a tuple such as {_EXAMPLE}, or a dict "
                                "{input name: shape} naming at least one input. Received: "
                                "shape={}")
            for name in shape:
                if not isinstance(name, str):
                    raise PassError(f"Expected the keys of shape to be input names (str). "
                                    f"Received: {name!r} in shape={shape!r}")
            self.shape = {name: _shape(value, f"shape[{name!r}]") for name, value in
                          shape.items()}
        else:
            self.shape = _shape(shape, "shape")

    def get_config(self) -> dict:
        if isinstance(self.shape, dict):
            return {"shape": {name: list(s) for name, s in self.shape.items()}}
        return {"shape": None if self.shape is None else list(self.shape)}

    def __repr__(self):
        return f"SetInputShape(shape={self.shape!r})"

    def run(self, graph) -> PassResult:
        result = PassResult(self.name, modified=False, outputs_unchanged=True)
        inputs = list(graph.graph["inputs"])
        names = {graph.nodes[n]["spec"].name: n for n in inputs}
        listed = ", ".join(repr(name) for name in names)
        if self.shape is None:
            raise PassError(
                f"SetInputShape needs the new shape: expected shape={_EXAMPLE} (batch "
                f"excluded) or {{input name: shape}} for the inputs of model "
                f"'{graph.graph['name']}' ({listed}). Received: shape=None")
        if isinstance(self.shape, dict):
            unknown = [name for name in self.shape if name not in names]
            if unknown:
                raise PassError(
                    f"model '{graph.graph['name']}' has no input named "
                    f"{', '.join(repr(n) for n in unknown)}; expected names among its "
                    f"inputs: {listed}")
            targets = [(names[name], shape) for name, shape in self.shape.items()]
        else:
            if len(inputs) != 1:
                raise PassError(
                    f"model '{graph.graph['name']}' has {len(inputs)} inputs ({listed}); "
                    f"expected shape as a dict {{input name: shape}} saying which to change. "
                    f"Received: shape={self.shape!r}")
            targets = [(inputs[0], self.shape)]
        for node_id, shape in targets:
            _set_input_shape(graph, node_id, shape, result, done=set())
        if result.modified:
            must_fit = graph.graph.setdefault("weights_must_fit", [])
            if self.name not in must_fit:
                must_fit.append(self.name)
        return result


def _shape(value, what) -> tuple:
    """`value` as a shape tuple of positive ints and None; PassError otherwise."""
    expected = (f"Expected {what} as a tuple of positive ints or None, batch dimension "
                f"excluded, such as {_EXAMPLE}. Received: {what}={value!r}")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise PassError(expected)
    dims = []
    for d in value:
        if d is None or (isinstance(d, str) and d.strip().lower() in ("none", "null")):
            dims.append(None)
        elif not isinstance(d, bool) and hasattr(d, "__index__") and int(d) > 0:
            dims.append(int(d))
        else:
            raise PassError(expected)
    if not dims:
        raise PassError(expected)
    return tuple(dims)


def _set_input_shape(graph, node_id, shape, result, done, where="") -> None:
    """Give input `node_id` of `graph` the shape `shape` (batch excluded) and mark every
    shape downstream unknown; recurse into nested models fed from it (see the module)."""
    spec = graph.nodes[node_id]["spec"]
    old = spec.config.get("batch_shape")
    if not isinstance(old, (list, tuple)) or not old:
        raise PassError(f"input '{spec.name}'{where}: its config has no batch_shape (received "
                        f"{old!r}); expected an InputLayer config with one")
    old = tuple(old)
    if len(shape) != len(old) - 1:
        raise PassError(
            f"input '{spec.name}'{where} has rank {len(old) - 1} (shape {old[1:]}, batch "
            f"excluded); expected a new shape of {len(old) - 1} dimensions, the rank cannot "
            f"change. Received: {tuple(shape)} ({len(shape)} dimensions)")
    new = (old[0],) + tuple(shape)
    if new == old:
        return
    spec.config = {**spec.config, "batch_shape": new}
    graph.nodes[node_id]["output_shapes"] = [new]
    result.modified = True
    result.changes.append(Change(spec.name, "set_input_shape",
                                 f"{old[1:]} -> {tuple(shape)}{where}"))
    for downstream in nx.descendants(graph, node_id):
        data = graph.nodes[downstream]
        data["output_shapes"] = None
        inner = data["spec"].subgraph if data["spec"] is not None else None
        if inner is None or id(inner) in done:
            continue
        done.add(id(inner))
        for inner_input in inner.graph["inputs"]:
            recorded = inner.nodes[inner_input]["spec"].config.get("batch_shape")
            if recorded is not None and tuple(recorded) == old:
                _set_input_shape(inner, inner_input, shape, result, done,
                                 f" of nested model '{inner.graph['name']}'")
