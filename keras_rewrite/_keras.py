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
import copy
import os
import sys
import threading
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
    # Some from_config methods edit the dict they get (KerasHub's MaskedLMHead pops
    # "token_embedding"): the graph's config must stay as it is. Keras's own copy first.
    if not cls.__module__.startswith("keras.src."):
        config = copy.deepcopy(config)
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
        subs = sublayers(layer)
    except Exception:  # a layer that cannot list its sub-layers just keeps its initializers
        subs = [layer]
    for sub in subs:
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


_recursion_lock = threading.Lock()
_recursion_needs: list[int] = []  # what each call inside `recursion_limit_for` needs
_recursion_limits = {"caller": 0, "set": 0}  # the caller's limit; the one set here last


@contextlib.contextmanager
def recursion_limit_for(num_nodes: int):
    """Raise Python's recursion limit enough for Keras to build a graph of `num_nodes` nodes.

    Keras builds a Functional model's node map recursively (keras/src/ops/function.py), about
    two frames per layer on the longest path, so a user may own a model deeper than the default
    limit allows to rebuild. The limit is restored afterwards.

    The limit is one for the whole interpreter, so overlapping calls (threads) share it: while
    any call runs, the limit is the largest any running call needs (or the caller's, if
    higher); when the last one ends, it is the caller's again, in whatever order they end. A
    limit the caller sets meanwhile becomes the caller's.
    """
    needed = 2000 + 4 * num_nodes
    with _recursion_lock:
        current = sys.getrecursionlimit()
        if not _recursion_needs or current != _recursion_limits["set"]:
            _recursion_limits["caller"] = current
        _recursion_needs.append(needed)
        _set_recursion_limit()
    try:
        yield
    finally:
        with _recursion_lock:
            if sys.getrecursionlimit() != _recursion_limits["set"]:
                _recursion_limits["caller"] = sys.getrecursionlimit()
            _recursion_needs.remove(needed)
            _set_recursion_limit()


def _set_recursion_limit() -> None:
    """The caller's limit, or more while calls that need more run (lock held)."""
    limit = max([_recursion_limits["caller"], *_recursion_needs])
    sys.setrecursionlimit(limit)
    _recursion_limits["set"] = limit


def compile_like(new_model, old_model):
    """Compile `new_model` with `old_model`'s loss and metrics and a fresh optimizer like its."""
    if not getattr(old_model, "compiled", False):
        return
    args = {k: _fresh(v) for k, v in old_model._compile_config.config.items()}
    optimizer = old_model.optimizer
    if optimizer is not None:
        args["optimizer"] = type(optimizer).from_config(optimizer.get_config())
        _carry_weight_decay_exclusions(optimizer, args["optimizer"], old_model, new_model)
        args["optimizer"] = _loss_scaled_like(args["optimizer"], old_model, new_model)
    new_model.compile(**args)


def _loss_scaled_like(optimizer, old_model, new_model):
    """`optimizer` (new), wrapped in a LossScaleOptimizer when `new_model` computes in float16
    and `old_model` did not, unwrapped in the opposite case.

    Keras wraps it in `compile` only when the *model's own* dtype policy is "mixed_float16"
    (the global policy when the model object was created); a rewrite that sets the policy of
    each layer (`SetDtypePolicy`) leaves the model's own, so the wrapping is done here.
    Without loss scaling, small float16 gradients underflow to zero.
    """
    def half(model):
        return any(getattr(getattr(layer, "dtype_policy", None), "name", None) ==
                   "mixed_float16" for layer in sublayers(model))

    scaler = keras.optimizers.LossScaleOptimizer
    if isinstance(optimizer, scaler):
        return optimizer.inner_optimizer if half(old_model) and not half(new_model) else optimizer
    return scaler(optimizer) if half(new_model) and not half(old_model) else optimizer


def _carry_weight_decay_exclusions(old, new, old_model, new_model) -> None:
    """`exclude_from_weight_decay` is not in an optimizer's config: carry the name pattern,
    and the excluded variables by path (the rebuilt model's variables are new objects)."""
    pattern = getattr(old, "_exclude_from_weight_decay_pattern", None)
    excluded = getattr(old, "_exclude_from_weight_decay", None) or set()
    if pattern is None and not excluded:
        return
    paths = {v.path for v in old_model.trainable_variables if old._var_key(v) in excluded}
    new.exclude_from_weight_decay(
        var_list=[v for v in new_model.trainable_variables if v.path in paths])
    new._exclude_from_weight_decay_pattern = pattern


def weight_decay_applies(optimizer, variable) -> bool:
    """Whether `optimizer` applies its ``weight_decay`` to `variable` (Keras 3 decays every
    trainable variable it updates unless `exclude_from_weight_decay` named it, by the variable
    itself or by a pattern searched in ``variable.name``): Keras's own decision
    (`_use_weight_decay`), read without filling its cache."""
    if not getattr(optimizer, "weight_decay", None):
        return False
    excluded = getattr(optimizer, "_exclude_from_weight_decay", None) or set()
    if excluded and optimizer._var_key(variable) in excluded:
        return False
    pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
    return pattern is None or pattern.search(variable.name) is None


def _fresh(value):
    """A new loss or metric object like `value` (evaluating the copy must not change the
    original's metric state); containers mapped, names and functions kept."""
    if isinstance(value, (list, tuple)):
        return type(value)(_fresh(v) for v in value)
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, (keras.metrics.Metric, keras.losses.Loss)):
        return type(value).from_config(value.get_config())
    return value


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


def copy_layer_object(layer, *, move_variables=False):
    """An independent copy of a built layer made from the object itself, not from its config.

    For layers whose `from_config(get_config())` fails or builds something else (a custom
    layer written without `get_config`, KerasHub's LlamaTransformerDecoder): the layer and its
    sub-layers are copied attribute by attribute, each variable becomes a new variable holding
    a copy of the value (training the copy never touches the original), and the copy has no
    call history, so it can be called in a new model. `copy.deepcopy(layer)` is no way around
    this: Keras routes it through serialization (`KerasSaveable.__reduce__`).

    With `move_variables=True` the copy takes the original's variable objects themselves
    (nothing is allocated; the original must not be used any more, see `mark_moved`).
    """
    from keras.src.utils import tracking

    subs = sublayers(layer)
    memo = {}
    for sub in subs:
        memo[id(sub._inbound_nodes)] = []
        memo[id(sub._outbound_nodes)] = []
        memo[id(sub)] = object.__new__(type(sub))
    for variable in _all_variables(subs):
        memo[id(variable)] = variable if move_variables else _new_variable_like(variable)
    with _modules_copy_as_themselves(), tracking.DotNotTrackScope():
        for sub in subs:
            memo[id(sub)].__dict__.update(copy.deepcopy(vars(sub), memo))
    for sub in subs:
        # Keras's trackers remember what they hold by id(): point them at the copies.
        tracker = getattr(sub, "_tracker", None)
        if tracker is not None:
            memo[id(sub)]._tracker.stored_ids = {
                store: {id(memo[i]) if i in memo else i for i in ids}
                for store, ids in tracker.stored_ids.items()}
    return memo[id(layer)]


def set_copied_dtype_policy(layer, source, policy: str) -> None:
    """Give `layer`, a copy of `source` (`copy_layer_object`), the dtype policy `policy`: the
    layer and each of its sub-layers that had `source`'s policy, as its constructor would
    have passed it on, except softmax/sigmoid sub-layers (KerasHub builds its attention
    softmax float32 on purpose). Variables keep their dtype."""
    old = source.dtype_policy.name
    for sub in sublayers(layer):
        if sub is not layer:
            if getattr(sub.dtype_policy, "name", None) != old:
                continue
            name = getattr(getattr(sub, "activation", None), "__name__", "")
            if isinstance(sub, keras.layers.Softmax) or name in ("softmax", "sigmoid",
                                                                 "log_softmax"):
                continue
        sub.dtype_policy = policy


def snapshot_live_state(model):
    """A function that puts back every attribute of `model`'s layers and every variable's
    regularizer and constraint as they are now (for all-or-nothing in-place passes)."""
    layers = sublayers(model)
    saved = [(layer, dict(vars(layer))) for layer in layers]
    variables = [(v, v.regularizer, v.constraint) for v in model.variables]

    def restore():
        for layer, attributes in saved:
            for name in [n for n in vars(layer) if n not in attributes]:
                object.__delattr__(layer, name)
            for name, value in attributes.items():
                if vars(layer).get(name, object()) is not value:
                    object.__setattr__(layer, name, value)
        for variable, regularizer, constraint in variables:
            variable.regularizer, variable.constraint = regularizer, constraint

    return restore


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


def _new_variable_like(variable):
    import numpy as np

    # Created under the original's scope so that its path (what get_weights order, LayoutMap
    # and DTypePolicyMap patterns match) is the original's.
    with contextlib.ExitStack() as scopes:
        for part in variable.path.split("/")[:-1]:
            scopes.enter_context(keras.name_scope(part))
        new = keras.Variable(
            initializer=np.array(variable.numpy()),  # a real copy: TF would alias the buffer
            shape=variable.shape, dtype=variable.dtype, trainable=variable.trainable,
            autocast=getattr(variable, "_autocast", True), name=variable.name,
            aggregation=getattr(variable, "aggregation", "none"),
            synchronization=getattr(variable, "synchronization", "auto"))
    new.regularizer = getattr(variable, "regularizer", None)
    new.constraint = getattr(variable, "constraint", None)
    return new


def sublayers(layer, *, include_self=True, recursive=True) -> list:
    """`layer`'s sub-layers (depth first, each once), in Keras's tracking order: the order the
    indices in `LayerSpec.sublayer_regularizers` refer to."""
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def own_variables(layer, trainable_only=False) -> list:
    """The variables `layer` holds itself (not its sub-layers'), in creation order."""
    own = list(layer._trainable_variables)
    return own if trainable_only else own + list(layer._non_trainable_variables)


def is_keras_layer(layer) -> bool:
    """A layer class of Keras itself (not a subclass defined elsewhere)."""
    return type(layer).__module__.startswith("keras.src.")


def layer_structure(layer, shapes=True):
    """What must match for two layers to be the same build: sub-layer classes and variables.

    With `shapes=False`, only the number of each sub-layer's variables: an input of another
    shape changes the shapes of a faithful re-creation's variables, never their number.
    """
    def variables(sub):
        own = sub._trainable_variables + sub._non_trainable_variables
        return tuple((tuple(v.shape), str(v.dtype)) for v in own) if shapes else len(own)

    return [(type(sub).__name__, variables(sub))
            for sub in sublayers(layer)]


def layer_state(layer, *, shapes=True) -> list:
    """What Keras keeps on a built layer beyond its config, at every depth, in tracking order.

    Per sub-layer (the layer itself first): its class, dtype policy name (a quantized
    layer's is ``int8_from_float32`` and the like), `quantization_mode`, `trainable` and LoRA
    rank. Per variable, in `layer.weights` order: its path from the layer's name on, dtype, shape (unless
    `shapes=False`), `trainable`, and the position of its first occurrence (tied variables
    stay one variable). Two layers with equal states compute and train alike, given equal
    variable values.
    """
    state = []
    for sub in sublayers(layer):
        policy = getattr(sub, "dtype_policy", None)
        state.append(("layer", type(sub).__name__, getattr(policy, "name", None),
                      getattr(sub, "quantization_mode", None), bool(sub.trainable),
                      getattr(sub, "lora_rank", None) if getattr(sub, "lora_enabled", False)
                      else None))
    first = {}
    for i, variable in enumerate(layer.weights):
        state.append(("variable", _path_from(variable.path, layer.name), str(variable.dtype),
                      tuple(variable.shape) if shapes else None, bool(variable.trainable),
                      first.setdefault(id(variable), i)))
    return state


def _path_from(path: str, name: str) -> str:
    """`path` from the segment `name` on: the scope of the enclosing model a layer was built
    in (``sequential/dense/kernel`` when a Sequential builds it, ``dense/kernel`` when a file
    loads it) is not the layer's."""
    parts = path.split("/")
    return "/".join(parts[parts.index(name):]) if name in parts else path


def carry_trainable_flags(source, target) -> None:
    """Give `target` and its sub-layers the `trainable` flags of `source`'s (same sub-layer
    classes, in order): a frozen sub-layer inside a trainable layer is in no config."""
    for old, new in zip(sublayers(source), sublayers(target)):  # parents first
        if new.trainable != old.trainable:
            new.trainable = old.trainable


_BASE_SAVE = Layer.save_own_variables
_BASE_LOAD = Layer.load_own_variables


class _StateStore(dict):
    """The in-memory store handed to `save_own_variables` / `load_own_variables`.

    Values are the original variables' values; on backends whose train step donates buffers
    (JAX) they are copied first (see `copy_variable`).
    """

    def __setitem__(self, key, value):
        if isinstance(value, keras.Variable):
            value = value.value
            if keras.backend.backend() != "tensorflow":
                value = keras.ops.copy(value)
        super().__setitem__(key, value)


def carry_state(source, target, assets_dir):
    """Carry every piece of state Keras would save from `source` to `target` (same build).

    Keras's own per-layer protocol, layer by layer over the two layers' sub-layer trees:
    `save_own_variables` / `load_own_variables` (which also finalizes derived state, e.g. an
    adapted Normalization's mean and variance tensors) and, for layers that have them,
    `save_assets` / `load_assets` (lookup vocabularies). `assets_dir()` returns a scratch
    folder for assets. The caller checks `layer_structure` equality first.
    """
    pairs = zip(sublayers(source), sublayers(target))
    for i, (old, new) in enumerate(pairs):
        if (type(old).save_own_variables is _BASE_SAVE
                and type(new).load_own_variables is _BASE_LOAD):
            # What the base protocol does, without the store: own variables, in order.
            for target, value in zip(new._trainable_variables + new._non_trainable_variables,
                                     old._trainable_variables + old._non_trainable_variables):
                copy_variable(target, value)
        else:
            store = _StateStore()
            old.save_own_variables(store)
            if store or new._trainable_variables or new._non_trainable_variables:
                new.load_own_variables(store)
        if callable(getattr(old, "save_assets", None)):
            folder = os.path.join(assets_dir(), str(i))
            os.makedirs(folder, exist_ok=True)
            old.save_assets(folder)
            new.load_assets(folder)


def set_sublayer_regularizers(layer, regularizers) -> None:
    """Set `LayerSpec.sublayer_regularizers` on a rebuilt layer's sub-layers.

    Both the sub-layer's attribute (what its `get_config` shows) and the variable's
    `regularizer` (what the loss reads: setting the attribute on a built layer does nothing).
    """
    subs = sublayers(layer)
    for (index, key), (variable_attr, in_cell, serialized) in regularizers.items():
        regularizer = keras.regularizers.get(serialized)
        set_live_regularizer(subs[index], key, variable_attr, in_cell, regularizer, regularizer)


# --------------------------------------------------------------------- live layers, in place
# What a pass's `apply_in_place` changes on a built model (`RewriteCallback`): passes decide
# on the graph and change live layers only through these functions.


def _regularizer_owner(layer, in_cell: bool):
    return layer.cell if in_cell else layer  # recurrent layers keep weights on their cell


def regularized_variable(layer, variable_attr: str, in_cell: bool):
    """The variable (or whatever the layer holds there) a regularizer setting applies to."""
    return getattr(_regularizer_owner(layer, in_cell), variable_attr, None)


def live_regularizers(layer, key: str, variable_attr: str, in_cell: bool):
    """(declared, effective): the layer attribute `key` (what `get_config` and saving see)
    and the regularizer of its variable `variable_attr` (what the loss reads)."""
    variable = regularized_variable(layer, variable_attr, in_cell)
    return (getattr(_regularizer_owner(layer, in_cell), key, None),
            getattr(variable, "regularizer", None))


def set_live_regularizer(layer, key: str, variable_attr: str, in_cell: bool, declared,
                         effective) -> bool:
    """Set the attribute `key` to `declared` and the variable's regularizer to `effective`;
    False when `variable_attr` is not a variable (quantized or LoRA), so only the attribute
    is set."""
    owner = _regularizer_owner(layer, in_cell)
    setattr(owner, key, declared)
    variable = getattr(owner, variable_attr, None)
    if not isinstance(variable, keras.Variable):
        return False
    variable.regularizer = effective
    return True


def set_live_noise_shape(layer, noise_shape) -> None:
    """Give a live Dropout layer a `noise_shape` (used by its next traced call)."""
    layer.noise_shape = noise_shape


# --------------------------------------------------------------------- Functional subclasses


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
    Other values are kept as they are. Returns the names of the attributes carried.
    """
    def mapped(value):
        if isinstance(value, Layer):
            return layer_map.get(id(value), value)
        if isinstance(value, dict):
            return {k: mapped(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
            return type(value)(mapped(v) for v in value) if isinstance(value, tuple) \
                else [mapped(v) for v in value]
        return value

    present = set(vars(new))
    carried = []
    for name, value in vars(original).items():
        if name in present or name in _COMPILE_STATE:
            continue
        if name == "_functional_layer_ids":  # KerasHub: ids of the model's own layers
            value = {id(layer) for layer in new._flatten_layers()}
        setattr(new, name, mapped(value))
        carried.append(name)
    if original.dtype_policy.name != new.dtype_policy.name:
        new.dtype_policy = original.dtype_policy
    return carried
