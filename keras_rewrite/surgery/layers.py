"""`DeleteLayer`, `InsertLayer`, `ReplaceLayer`: rewire one tensor, checking every consumer."""
from __future__ import annotations

import keras

from keras_rewrite import _keras
from keras_rewrite.rebuild import layer_copy
from keras_rewrite.graph.edit import insert_after, remove_node
from keras_rewrite.graph.schema import LayerSpec, Slot, fresh_name, iter_graphs, map_structure
from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.surgery.errors import SurgeryError, SurgeryShapeError, UnsupportedLayerError
from keras_rewrite.surgery.locate import _calls_of


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
    with layer_copy.zero_initializers(layer):
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
    with layer_copy.zero_initializers(layer):
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
