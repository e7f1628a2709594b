"""The class a model is rebuilt as (a Functional subclass stays itself), a new instance around a
new graph, the attributes its constructor would have set, and a moved model made unusable."""
from __future__ import annotations


import keras

from keras_rewrite import _keras
from keras_rewrite._keras import Functional, Layer, sublayers


def model_class_of(model):
    """The class to rebuild `model` as, and whether its config describes its graph.

    A Functional subclass (every KerasHub backbone and task) is rebuilt as its own class. Its
    `get_config` usually holds constructor arguments only (`Backbone.from_config` is
    `cls(**config)`), so a file of it reloads the class's own graph; such a class "saves as
    constructor arguments". Keras's Functional and Sequential save their graph.
    """
    cls = type(model)
    if cls in (Functional, keras.Sequential):
        return cls, True
    return cls, cls.get_config is Functional.get_config


def new_functional(cls, inputs, outputs, name):
    """A `cls` instance (a Functional subclass) around a new graph, skipping `cls.__init__`.

    The subclass's constructor builds its own layers from arguments; here the graph is given,
    so only Functional's initializer runs. `carry_model_attributes` then adds the rest.
    """
    if cls is Functional:
        return keras.Model(inputs=inputs, outputs=outputs, name=name)
    model = cls.__new__(cls)
    Functional.__init__(model, inputs=inputs, outputs=outputs, name=name)
    return model


# Set by compile(): the copy is compiled afresh (compile_like), never shares these.
_COMPILE_STATE = {"optimizer", "_compile_config", "_compiled_trainable_state", "stop_training",
                  "compiled", "loss", "_compile_loss", "_compile_metrics", "_loss_tracker",
                  "_metrics", "_jit_compile", "_run_eagerly", "steps_per_execution",
                  "_steps_per_execution", "train_function", "test_function", "predict_function"}


def carry_model_attributes(original, new, layer_map) -> list[str]:
    """Give `new` the attributes of `original` that Functional's initializer did not set.

    Layers (also in lists, tuples and dicts) are replaced by their rebuilt counterparts from
    `layer_map` (id of original layer -> new layer): `backbone.token_embedding`,
    `transformer_layers`, `task.backbone` then point into the new model. A layer outside the
    graph (a task's `preprocessor`) is shared, not copied: it holds no trained weights.
    Other values are kept as they are. Returns the names of the layers of `original`'s graph
    that an attribute holds but the rewrite removed (they are left pointing at the original).
    """
    in_graph = {id(layer) for layer in original.layers}
    stale = []
    inner = {}  # id(sub-layer of an original graph layer) -> its counterpart in the new one
    for layer in original.layers:
        counterpart = layer_map.get(id(layer))
        if counterpart is not None and counterpart is not layer:
            old_subs, new_subs = sublayers(layer), sublayers(counterpart)
            if [type(x) for x in old_subs] == [type(x) for x in new_subs]:
                inner.update({id(a): b for a, b in zip(old_subs, new_subs)})

    def mapped(value):
        if isinstance(value, Layer):
            if id(value) in in_graph and id(value) not in layer_map:
                stale.append(value.name)
            # A sub-layer held by attribute too (RoBERTa's `token_embedding`, inside its
            # TokenAndPositionEmbedding): the new one's, never the original's (shared state).
            return layer_map.get(id(value), inner.get(id(value), value))
        if isinstance(value, dict):
            return {k: mapped(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
            return type(value)(mapped(v) for v in value) if isinstance(value, tuple) \
                else [mapped(v) for v in value]
        return value

    present = set(vars(new))
    for name, value in vars(original).items():
        if name in present or name in _COMPILE_STATE:
            continue
        if name == "_functional_layer_ids":  # KerasHub: ids of the model's own layers
            value = {id(layer) for layer in new._flatten_layers()}
        setattr(new, name, mapped(value))
    # Keras lists a model's weights in the order it tracked its layers: the subclass's
    # __init__ assigned attributes first (BART's encoder, then decoder), Functional's
    # initializer came last; here it came first. Track them in the original's order.
    order = [layer_map.get(id(l), inner.get(id(l))) for l in _keras.tracked_layers(original)]
    if None not in order:
        _keras.set_tracked_layers(new, order)
    return sorted(set(stale))


def mark_moved(model, new_name) -> None:
    """Make calling `model` (whose variables moved into model `new_name`) a clear error."""
    from keras_rewrite.errors import RewriteError

    def moved(*args, **kwargs):
        raise RewriteError(
            f"model '{model.name}' was rewritten with copy=False: its variables now belong to "
            f"the rewritten model '{new_name}'. Use that model, or rewrite with copy=True to "
            "keep both")

    object.__setattr__(model, "call", moved)
    for attr in ("predict_function", "train_function", "test_function"):
        object.__setattr__(model, attr, None)
