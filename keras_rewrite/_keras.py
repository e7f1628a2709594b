"""The one module that touches Keras internals.

Everything keras_rewrite needs from Keras beyond its public API goes through here: walking a
Functional model's own call nodes, finding the Functional graph inside a Sequential, re-creating
a layer without drawing random initial weights, Keras's recursion during model construction, and
the compile configuration. When a Keras release changes one of these, this file and its test
(`_keras_test.py`) are what change.

Measured on Keras 3.15 (see ../shared/KERAS_FACTS.md):
- `model._nodes_by_depth` holds only this model's call nodes (depth 0 = outputs); a layer's
  `_inbound_nodes` also holds calls made from other models, so it is never walked directly.
- A Sequential model's graph is `model._functional` (None until the model is built).
- Building a Functional model recurses once per layer on the longest path.
"""
from __future__ import annotations

import contextlib
import sys

import keras

from .errors import UnsupportedModelError

Layer = keras.layers.Layer
Operation = keras.Operation
InputLayer = keras.layers.InputLayer
KerasTensor = keras.KerasTensor


def is_graph_model(layer) -> bool:
    """True for a Functional or Sequential model (a model whose layers we can walk)."""
    return isinstance(layer, keras.Sequential) or (
        isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")
    )


def functional_of(model):
    """The Functional graph behind `model`, or a clear UnsupportedModelError saying why not."""
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise UnsupportedModelError(
                f"Sequential model '{model.name}' has not been built, so it has no graph of layer "
                "calls to rewrite. Expected a built model. Build it first: give it an input "
                "(`keras.Sequential([keras.Input(shape), ...])`), call `model.build(input_shape)`, "
                "or call it once on data."
            )
        return functional
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth"):
        return model
    if isinstance(model, keras.Model):
        raise UnsupportedModelError(
            f"Model '{model.name}' of class {type(model).__name__} is a subclassed keras.Model "
            "with its own `call()`, so it has no graph of layer calls to rewrite. Expected a "
            "Functional or Sequential model. Rebuild it with the functional API "
            "(`keras.Model(inputs, outputs)`), or use it as a layer inside a Functional model."
        )
    raise UnsupportedModelError(
        f"Expected a built Functional or Sequential keras.Model. Received: {type(model).__name__}."
    )


def nodes_in_order(functional):
    """This model's own call nodes, producers before consumers (deepest first)."""
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        yield from functional._nodes_by_depth[depth]


def producer_of(tensor):
    """The (call node object, output index) that produced a symbolic tensor."""
    operation, node_index, tensor_index = tensor._keras_history
    return operation._inbound_nodes[node_index], tensor_index


def node_arguments(node):
    """The positional and keyword arguments a call node was made with (tensors included)."""
    return node.arguments.args, node.arguments.kwargs


def node_outputs(node):
    return list(node.outputs)


def input_structure(functional):
    return functional._inputs_struct


def output_structure(functional):
    return functional._outputs_struct


def rebuild_lambda(config, source):
    """Re-create a Lambda from its original function object, never from serialized bytecode.

    Only the base layer settings (name, trainable, dtype) come from `config`; the function,
    output_shape, mask and arguments are the original objects.
    """
    if source is None:
        raise ValueError("a Lambda layer can only be rebuilt from an existing Lambda layer")
    base = {k: config[k] for k in ("name", "trainable", "dtype") if k in config}
    return keras.layers.Lambda(
        source.function,
        output_shape=source._output_shape,
        mask=source.mask,
        arguments=source.arguments,
        **base,
    )


def new_operation(cls, config, source):
    """A fresh layer or operation of class `cls` with `config`."""
    if cls is keras.layers.Lambda:
        return rebuild_lambda(config, source)
    return cls.from_config(config)


@contextlib.contextmanager
def zero_initializers(layer):
    """Temporarily give `layer` (and its sub-layers) zero initializers.

    Weights that are overwritten by the original's right after building need not be drawn at
    random (drawing them is most of clone_model's time). The original initializer objects are
    put back afterwards, so `get_config()` is unchanged.
    """
    zeros = keras.initializers.Zeros()
    swapped = []
    try:
        sublayers = list(layer._flatten_layers(include_self=True, recursive=True))
    except Exception:  # a layer that cannot list its sub-layers just keeps its initializers
        sublayers = [layer]
    for sub in sublayers:
        for attr, value in list(vars(sub).items()):
            if attr.endswith("initializer") and isinstance(value, keras.initializers.Initializer):
                swapped.append((sub, attr, value))
                object.__setattr__(sub, attr, zeros)
    try:
        yield
    finally:
        for sub, attr, value in swapped:
            object.__setattr__(sub, attr, value)


def variable_key_list(layer):
    """(name, occurrence) for each of `layer.weights`, a key stable across re-creation."""
    seen = {}
    keys = []
    for variable in layer.weights:
        n = seen.get(variable.name, 0)
        seen[variable.name] = n + 1
        keys.append((variable.name, n))
    return keys


def copy_variable(target, source):
    """Assign `source`'s value to `target` without a NumPy round trip.

    On TensorFlow the two variables then share one buffer until either is written: resource
    variables copy before an in-place update of a shared buffer, so no full copy of the model
    is made up front. JAX's train step donates variable buffers (they are deleted after the
    step), so there the value is copied first, or training the copy would delete the
    original's weights. (Both behaviours are pinned by test_training_the_copy_leaves_the_
    original_untouched.)
    """
    value = source.value
    if keras.backend.backend() != "tensorflow":
        value = keras.ops.copy(value)
    target.assign(value)


@contextlib.contextmanager
def recursion_limit_for(num_nodes: int):
    """Raise Python's recursion limit enough for Keras to build a graph of `num_nodes` nodes.

    Keras builds a Functional model's node map recursively (keras/src/ops/function.py), about
    two frames per layer on the longest path, so a user may own a model deeper than the default
    limit allows to rebuild. The limit is restored afterwards.
    """
    old = sys.getrecursionlimit()
    needed = 2000 + 4 * num_nodes
    if needed > old:
        sys.setrecursionlimit(needed)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def compile_like(new_model, old_model):
    """Compile `new_model` with `old_model`'s loss and metrics and a fresh optimizer like its."""
    if not getattr(old_model, "compiled", False):
        return
    args = dict(old_model._compile_config.config)
    optimizer = old_model.optimizer
    if optimizer is not None:
        args["optimizer"] = type(optimizer).from_config(optimizer.get_config())
    new_model.compile(**args)


def distribution_scope(model):
    """The `tf.distribute` strategy scope `model` was built under, or a null context.

    Keras's TensorFlow trainer records the strategy in scope when the model was created
    (`Model._distribute_strategy`); variables of a model trained under a strategy must be
    created under the same strategy, so the rebuilt model is built inside it.
    Keras's own distribution API (`keras.distribution.set_distribution`) is global and needs
    nothing here: variables created while it is set are laid out by it.
    """
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None or keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    if tf.distribute.has_strategy():  # the caller already entered a scope: keep theirs
        return contextlib.nullcontext()
    return strategy.scope()


def set_own_trainable(model, value: bool) -> None:
    """Set a rebuilt model's own `trainable` flag without touching its layers' flags.

    The public setter propagates to every sub-layer, which would overwrite the per-layer
    flags just restored from the layers' configs.
    """
    model._trainable = bool(value)
