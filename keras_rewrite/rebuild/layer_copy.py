"""Copies of layers: from the object itself where its config does not hold it all, fresh
without drawing random weights, and state carried by Keras's own per-layer save protocol."""
from __future__ import annotations

import contextlib
import os

import keras

from keras_rewrite import _keras
from keras_rewrite.graph import kinds
from keras_rewrite._keras import Layer, copy_variable, sublayers
from keras_rewrite.passes.live import set_live_regularizer


def holds_lora(layer) -> bool:
    """True when `layer` or a sub-layer has LoRA adapters: Keras's save/load protocol merges
    them into the kernel, so such a layer's state must be copied variable by variable."""
    return any(getattr(sub, "lora_enabled", False) for sub in sublayers(layer))


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
            if isinstance(sub, keras.layers.Softmax) or name in kinds.FLOAT32_ACTIVATIONS:
                continue
        sub.dtype_policy = policy


def retie_shared_sublayers(source, layer, layer_map) -> list[str]:
    """Point `layer`'s attributes at the rebuilt counterparts of layers `source` shares with
    the rest of the model (KerasHub's MaskedLMHead holds the backbone's `token_embedding`:
    re-created from its config it would hold a copy, an untied second variable). Returns the
    attributes that hold such shared layers (each proved where it is rebuilt)."""
    shared = []
    for name, value in _keras.attributes(source).items():
        counterpart = layer_map.get(id(value)) if isinstance(value, Layer) else None
        if (counterpart is None or value is source
                or not isinstance(getattr(layer, name, None), type(value))):
            continue
        if getattr(layer, name) is not counterpart:
            _keras.replace_sublayer(layer, name, counterpart)
        shared.append(name)
    return shared


def creation_scope(layer, *, building_inside: bool = False):
    """The name scopes `layer`'s variables were created in, entered: a layer built under them
    gets the original's variable paths (LayoutMap and DTypePolicyMap patterns match paths).
    keras.applications' NASNet builds its blocks inside ``name_scope("reduction_A_block_
    stem_1")``: that scope, around the call. `building_inside`: the scopes down to the
    sub-layer that owns the first variable, around `from_config`, which builds a wrapper's
    inner layer at once (a TimeDistributed's, created inside the wrapper's name otherwise).
    Keras adds the layer's own name when it builds it in a call. Nothing for a layer
    without variables or built outside any scope."""
    scopes = contextlib.ExitStack()
    variables = getattr(layer, "weights", None) if isinstance(layer, Layer) else None
    if not variables:
        return scopes
    parts = variables[0].path.split("/")
    owner = layer.name
    if building_inside:
        owner = next((sub.name for sub in sublayers(layer)
                      if any(v is variables[0] for v in _keras.own_variables(sub))), owner)
    if owner in parts:
        for part in parts[:parts.index(owner)]:
            scopes.enter_context(keras.name_scope(part))
    return scopes


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
    # float8 scales and amax histories: the optimizer overwrites them with their "gradient"
    new.overwrite_with_gradient = getattr(variable, "overwrite_with_gradient", False)
    return new


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
            if any(v is None for v in store.values()) and _same_own_variables(old, new):
                # Keras 3.15: a reloaded int8 KerasHub layer saves None for its scale (its
                # policy, taken from the file's DTypePolicyMap, says no quantization, so
                # Keras cannot re-save it either); the variables themselves are all there.
                for target, value in zip(_keras.own_variables(new), _keras.own_variables(old)):
                    copy_variable(target, value)
            elif store or new._trainable_variables or new._non_trainable_variables:
                new.load_own_variables(store)
        if callable(getattr(old, "save_assets", None)):
            folder = os.path.join(assets_dir(), str(i))
            os.makedirs(folder, exist_ok=True)
            old.save_assets(folder)
            new.load_assets(folder)


def _same_own_variables(old, new) -> bool:
    """Both layers hold the same own variables (path, shape, dtype), no LoRA adapter."""
    def own(layer):
        return [(v.path, tuple(v.shape), str(v.dtype)) for v in _keras.own_variables(layer)]

    return not getattr(old, "lora_enabled", False) and own(old) == own(new)


def set_sublayer_regularizers(layer, regularizers) -> None:
    """Set `LayerSpec.sublayer_regularizers` on a rebuilt layer's sub-layers.

    Both the sub-layer's attribute (what its `get_config` shows) and the variable's
    `regularizer` (what the loss reads: setting the attribute on a built layer does nothing).
    """
    subs = sublayers(layer)
    for (index, key), (variable_attr, in_cell, serialized) in regularizers.items():
        regularizer = keras.regularizers.get(serialized)
        set_live_regularizer(subs[index], key, variable_attr, in_cell, regularizer, regularizer)


def copy_layer_object(layer, *, move_variables=False):
    """An independent copy of a built layer made from the object itself, not from its config
    (`_keras.copy_layer_tree`): each variable becomes a new variable holding a copy of the
    value, created under the original's name scopes, so training the copy never touches the
    original and the paths are the same.

    With `move_variables=True` the copy takes the original's variable objects themselves
    (nothing is allocated; the original must not be used any more, see `mark_moved`).
    """
    return _keras.copy_layer_tree(layer, (lambda v: v) if move_variables else _new_variable_like)
