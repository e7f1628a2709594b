"""The one module that touches Keras internals.

Everything keras_rewrite needs from Keras beyond its public API goes through here: walking a
Functional model's own call nodes, finding the Functional graph inside a Sequential, a layer's
own variables and sub-layers in tracking order, copying a layer object past Keras's trackers,
and a backend's variable copies. When a Keras release changes one of these, this file and its test
(`_keras_test.py`) are what change.

Measured on Keras 3.15 (see ../shared/KERAS_FACTS.md):
- `model._nodes_by_depth` holds only this model's call nodes (depth 0 = outputs); a layer's
  `_inbound_nodes` also holds calls made from other models, so it is never walked directly.
- A Sequential model's graph is `model._functional` (None until the model is built).
- Building a Functional model recurses once per layer on the longest path.
"""
from __future__ import annotations

import contextlib
import copy
import sys
import types

import keras
from keras.src.models.functional import Functional

from keras_rewrite.errors import UnsupportedModelError

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
                "or call it once on data.")
        return functional
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth"):
        return model
    if isinstance(model, keras.Model):
        raise UnsupportedModelError(
            f"Model '{model.name}' of class {type(model).__name__} is a subclassed keras.Model "
            "with its own `call()`, so it has no graph of layer calls to rewrite. Expected a "
            "Functional or Sequential model: rebuild it with the functional API "
            "(`keras.Model(inputs, outputs)`), or use it as a layer inside a Functional model.")
    raise UnsupportedModelError(
        f"Expected a built Functional or Sequential keras.Model. Received: {type(model).__name__}.")


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
    return keras.layers.Lambda(source.function, output_shape=source._output_shape,
                               mask=source.mask, arguments=source.arguments, **base)


def new_operation(cls, config, source):
    """A fresh layer or operation of class `cls` with `config`."""
    if cls is keras.layers.Lambda:
        return rebuild_lambda(config, source)
    # Some from_config methods edit the dict they get (KerasHub's MaskedLMHead pops
    # "token_embedding"): the graph's config must stay as it is. Keras's own copy first.
    if not cls.__module__.startswith("keras.src."):
        config = copy.deepcopy(config)
    return cls.from_config(config)


def variable_key_list(layer):
    """(name, occurrence) for each of `layer.weights`, a key stable across re-creation."""
    seen, keys = {}, []
    for variable in layer.weights:
        keys.append((variable.name, seen.get(variable.name, 0)))
        seen[variable.name] = keys[-1][1] + 1
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
    if keras.backend.backend() == "torch" and _adopt_torch_layout(target, value):
        return
    target.assign(value)


def _adopt_torch_layout(target, value) -> bool:
    """On torch, give `target` `value` itself when their memory layouts differ.

    An orthogonal initializer leaves a transposed (non-contiguous) tensor, and the rebuild's
    zero-initialized variable is contiguous: ``assign`` copies the values into the contiguous
    one, and a matmul over the other layout rounds differently (a SimpleRNN's output moved
    by 1e-9). Swapping the Parameter's data keeps the same Parameter object (torch's parameter
    tracking is unchanged) with the original's layout, as Keras's own loading keeps it.
    """
    import torch

    held = getattr(target, "_value", None)
    if not isinstance(held, torch.Tensor) or not isinstance(value, torch.Tensor):
        return False
    if (held.shape != value.shape or held.dtype != value.dtype
            or held.device != value.device or held.stride() == value.stride()):
        return False
    with torch.no_grad():
        held.data = value.detach()
    return True


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
    """Set a rebuilt model's own `trainable` flag, not its layers' (the public setter would
    overwrite the per-layer flags just restored from their configs)."""
    model._trainable = bool(value)


# ------------------------------------------------------------ sub-layers in tracking order


def sublayers(layer, *, include_self=True, recursive=True) -> list:
    """`layer`'s sub-layers (depth first, each once), in Keras's tracking order: the order the
    indices in `LayerSpec.sublayer_regularizers` refer to."""
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def tracked_layers(layer) -> list:
    """The direct sub-layers `layer` tracks, in its order (what `weights` follows)."""
    return list(layer._layers)


def set_tracked_layers(layer, order) -> None:
    """Track the same direct sub-layers in `order` (a permutation of `tracked_layers`)."""
    if sorted(map(id, order)) == sorted(map(id, layer._layers)):
        layer._layers[:] = order


def attributes(layer) -> dict:
    """`vars(layer)` and, on torch (a Layer is a torch.nn.Module), its `_modules`: where
    torch keeps the sub-layers set as attributes."""
    return {**vars(layer), **getattr(layer, "_modules", {})}


def replace_sublayer(layer, attr: str, new) -> None:
    """Make `layer.attr` the layer `new`, in the tracking position of the one it replaces
    (which `layer` then no longer tracks)."""
    old = getattr(layer, attr)
    index = next((i for i, l in enumerate(layer._layers) if l is old), None)
    if index is None:
        layer._layers.append(new)
    else:
        layer._layers[index] = new
    if attr in getattr(layer, "_modules", {}):
        layer._modules[attr] = new
    else:
        object.__setattr__(layer, attr, new)


def own_variables(layer, trainable_only=False) -> list:
    """The variables `layer` holds itself (not its sub-layers'), in creation order."""
    own = list(layer._trainable_variables)
    return own if trainable_only else own + list(layer._non_trainable_variables)


def is_keras_layer(layer) -> bool:
    """A layer class of Keras itself (not a subclass defined elsewhere)."""
    return type(layer).__module__.startswith("keras.src.")


def layer_structure(layer, shapes=True):
    """What must match for two layers to be the same build: sub-layer classes and variables
    (with `shapes=False` only their number: an input of another shape changes the shapes of
    a faithful re-creation's variables, never their number)."""
    def variables(sub):
        own = own_variables(sub)
        return tuple((tuple(v.shape), str(v.dtype)) for v in own) if shapes else len(own)

    return [(type(sub).__name__, variables(sub)) for sub in sublayers(layer)]


# ------------------------------------------------------------------ layers that do not round-trip


@contextlib.contextmanager
def _modules_copy_as_themselves():
    # A SeedGenerator keeps the backend module as an attribute; modules cannot be deep-copied
    # (pickle refuses them too), and the only sensible copy of a module is the module itself.
    dispatch = copy._deepcopy_dispatch
    had = types.ModuleType in dispatch
    dispatch[types.ModuleType] = copy._deepcopy_atomic
    try:
        yield
    finally:
        if not had:
            del dispatch[types.ModuleType]


def copy_layer_tree(layer, new_variable):
    """An independent copy of a built layer made from the object itself, not from its config.

    For layers whose `from_config(get_config())` fails or builds something else (a custom
    layer written without `get_config`, KerasHub's LlamaTransformerDecoder): the layer and its
    sub-layers are copied attribute by attribute, each variable (seed generators' too) becomes
    `new_variable(variable)`, and the copy has no call history, so it can be called in a new
    model. `copy.deepcopy(layer)` goes through serialization (`KerasSaveable.__reduce__`).
    """
    from keras.src.utils import tracking

    subs = sublayers(layer)
    memo = {}
    for sub in subs:
        memo[id(sub._inbound_nodes)] = []
        memo[id(sub._outbound_nodes)] = []
        memo[id(sub)] = object.__new__(type(sub))
    for variable in _all_variables(subs):
        memo[id(variable)] = new_variable(variable)
    with _modules_copy_as_themselves(), tracking.DotNotTrackScope():
        for sub in subs:
            memo[id(sub)].__dict__.update(copy.deepcopy(vars(sub), memo))
    for sub in subs:
        _rebind_wrappers(memo[id(sub)], memo)
        # Keras's trackers remember what they hold by id(): point them at the copies.
        tracker = getattr(sub, "_tracker", None)
        if tracker is not None:
            memo[id(sub)]._tracker.stored_ids = {
                store: {id(memo[i]) if i in memo else i for i in ids}
                for store, ids in tracker.stored_ids.items()}
    return memo[id(layer)]


def _rebind_wrappers(copied, memo) -> None:
    """`Layer.__new__` wraps `build` and `quantize` per instance, in closures over the
    instance and its bound methods: copied as they are, the copy's `quantize()` would
    quantize the original. Re-make each such function with its cells pointing at copies."""
    for name, value in list(vars(copied).items()):
        if isinstance(value, types.FunctionType) and value.__closure__:
            vars(copied)[name] = _rebound(value, memo)


def _rebound(function, memo):
    def moved(x):
        if isinstance(x, types.MethodType) and id(x.__self__) in memo:
            return types.MethodType(x.__func__, memo[id(x.__self__)])
        if isinstance(x, types.FunctionType) and x.__closure__:
            return _rebound(x, memo)
        return memo.get(id(x), x)
    new = types.FunctionType(function.__code__, function.__globals__, function.__name__,
                             function.__defaults__, tuple(types.CellType(moved(
                                 c.cell_contents)) for c in function.__closure__))
    new.__dict__.update(function.__dict__)
    return new


def _all_variables(sublayers):
    seen = set()
    for sub in sublayers:
        candidates = list(sub.variables)
        for generator in getattr(sub, "_seed_generators", None) or []:
            candidates.append(generator.state)
        for variable in candidates:
            if id(variable) not in seen:
                seen.add(id(variable))
                yield variable


def first_output(layer):
    """The output tensor of `layer`'s first call (``layer.output`` refuses a layer called more
    than once)."""
    return layer.get_output_at(0) if len(layer._inbound_nodes) > 1 else layer.output


# ------------------------------------------------------- serializing a model must not change it
# `DTypePolicyMap.get_config()` with ``default_policy=None`` sets ``_name`` and ``_source_name``
# of every policy it holds to None *in place* (Keras 3.15), and `Backbone.get_config` builds such
# a map from the layers' own policy objects: `serialize_keras_object(quantized_backbone)` renames
# the live layers' policies. `policies_kept(model)` snapshots those private names for every
# policy reachable from the model (a map's values included) and restores them afterwards.


_NAMES = ("_name", "_source_name")


def _policies(model):
    seen = {}
    layers = model._flatten_layers(include_self=True, recursive=True) \
        if hasattr(model, "_flatten_layers") else []
    for layer in layers:
        policy = getattr(layer, "_dtype_policy", None)
        if policy is None:
            continue
        found = [policy]
        policy_map = getattr(policy, "_policy_map", None)
        if isinstance(policy_map, dict):
            found.extend([*policy_map.values(), getattr(policy, "default_policy", None)])
        for p in (p for p in found if p is not None):
            seen.setdefault(id(p), p)
    return list(seen.values())


@contextlib.contextmanager
def policies_kept(model):
    """Run the body, then give every dtype policy of `model` its names back."""
    snapshot = [(p, {a: getattr(p, a) for a in _NAMES if hasattr(p, a)})
                for p in _policies(model)]
    try:
        yield
    finally:
        for policy, names in snapshot:
            for attribute, value in names.items():
                if getattr(policy, attribute, None) != value:
                    setattr(policy, attribute, value)


# --------------------------------------------------------------------- saving a rebuilt class


def save_class_as(cls, registered_name: str) -> None:
    """Make Keras write `registered_name` for `cls` in a file (not load it as `cls`)."""
    from keras.src.saving import object_registration

    object_registration.GLOBAL_CUSTOM_NAMES[cls] = registered_name


def graph_config(model) -> dict:
    """Functional's config (the graph) of `model`, also when its class's constructor is not
    Functional's (Functional.get_config then gives only the name)."""
    view = Functional(input_structure(model), output_structure(model), name=model.name)
    return {**Functional.get_config(view), "trainable": model.trainable}
