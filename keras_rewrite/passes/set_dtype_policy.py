"""`SetDtypePolicy`: run a model in mixed precision (or back in float32), every weight kept.

The semantics it relies on (Keras 3 mixed precision): a layer's dtype policy has a variable
dtype and a compute dtype. "mixed_float16" and "mixed_bfloat16" keep variables in float32 and
compute in float16 / bfloat16; each layer casts its floating inputs to its compute dtype when
called. So setting the policy of every layer changes how the model computes, not its weights:
the same float32 variables are carried over, bit for bit, and predictions differ by the
rounding of the compute dtype (about 1e-3 relative for float16, 1e-2 for bfloat16).

What the pass sets, in the graph's layer configs (nested models' layers too):

- every layer whose policy has float32 variables and a floating compute dtype ("float32",
  "mixed_float16", "mixed_bfloat16") gets the new policy, as `keras.mixed_precision.
  set_global_policy` before building would have given it. A layer of a KerasHub block passes
  its policy on to its sub-layers itself.
- kept float32, as the Keras mixed-precision guide advises: a layer that produces a model
  output through softmax, log_softmax or sigmoid (a `Softmax` layer, an `Activation`, or a
  fused ``activation=``), and the shape-only layers (Reshape, Flatten, Permute, Identity)
  between it and the output; a nested model's output counts where it is the model's output.
  Each is in the report (``kept_float32``) with the reason.
- left as they are, each in the report with the reason: layers whose policy is not a plain
  float policy with float32 variables (Hashing's "int64", float64 or pure float16 layers,
  whose variables would change dtype, quantized layers), and layers whose config cannot say
  a policy (no ``dtype`` entry, or a plain dtype string such as Discretization's, which
  Keras saves as the variable dtype: a file would reload it float32).
- layers that Keras cannot re-create from their configs (``get_config()`` fails:
  KerasHub's LlamaTransformerDecoder; or ``from_config`` fails: ViTPatchingAndEmbedding): the
  rebuild copies the layer object and sets the policy on it and on its sub-layers that had
  its policy (not softmax ones, which KerasHub keeps float32 on purpose); the report's `how`
  says so. A custom layer that builds its sub-layers without passing its policy on gets
  the same treatment when, re-created from its config, it fails or builds other variables.
- Input layers keep their dtype, as Keras does: it is the input data's dtype (float32 image
  batches, int32 token ids); the first layer casts.
- BatchNormalization, LayerNormalization and GroupNormalization get the policy too; Keras
  computes their statistics in float32 itself (it upcasts float16/bfloat16 inputs), which the
  report says.

"float32" turns a mixed model back. The pass lists itself in the graph attribute
``weights_must_fit`` (every weight must still fit: float32 variables stay float32).

Compiled models: Keras wraps the optimizer in a LossScaleOptimizer in `compile` only when the
*model's own* policy is "mixed_float16"; `rewrite` compiles the copy like the original and does
that wrapping itself when the copy's layers compute in float16 (and unwraps a
LossScaleOptimizer when a "mixed_float16" model goes back to float32).

Example:
    >>> import keras, keras_rewrite
    >>> from keras_rewrite import passes
    >>> inputs = keras.Input((4,))
    >>> x = keras.layers.Dense(8, activation="relu")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    >>> fast = keras_rewrite.rewrite(model, [passes.SetDtypePolicy("mixed_bfloat16")])
    >>> [layer.dtype_policy.name for layer in fast.layers]  # input, hidden, output softmax
    ['float32', 'mixed_bfloat16', 'float32']
"""
from __future__ import annotations

import keras
from keras import layers

from keras_rewrite.errors import PassError
from keras_rewrite.graph import kinds
from keras_rewrite.graph.schema import iter_graphs
from keras_rewrite.graph.view import View
from keras_rewrite.passes.base import Change, Pass, PassResult

__all__ = ["SetDtypePolicy", "POLICIES"]

POLICIES = ("mixed_bfloat16", "mixed_float16", "float32")
_FLOAT_POLICIES = POLICIES  # a model of another policy keeps its own
# A model output produced through one of these is kept float32 (Keras mixed-precision guide).
FLOAT32_ACTIVATIONS = ("softmax", "log_softmax", "sigmoid")
# Layers that only move values around: between a float32 softmax and the output, they must be
# float32 too, or they would cast the probabilities back to float16.
SHAPE_ONLY = (layers.Reshape, layers.Flatten, layers.Permute, layers.Identity)
# Keras computes these in float32 whatever their policy (checked in Keras 3.15's sources:
# BatchNormalization and GroupNormalization upcast float16/bfloat16 inputs, LayerNormalization
# computes `ops.layer_normalization` in at least float32).
SELF_UPCASTING = (layers.BatchNormalization, layers.LayerNormalization,
                  layers.GroupNormalization)
_COMPUTE_DTYPES = ("float32", "float16", "bfloat16")


class SetDtypePolicy(Pass):
    """Set every layer's dtype policy; the output softmax/sigmoid stays float32.

    Args:
        policy: "mixed_bfloat16" (default: float32 variables, bfloat16 compute; no loss
            scaling needed), "mixed_float16" (float16 compute: GPUs with tensor cores; a
            compiled model gets a LossScaleOptimizer) or "float32" (back to full precision).

    Variables stay float32 and are carried bit for bit; predictions change by the rounding of
    the compute dtype (the report's verdict: changed), except when nothing changes.
    """

    short_name = "set_dtype_policy"
    summary = ("sets every layer's dtype policy (mixed_bfloat16, mixed_float16, float32); "
               "variables and the output softmax/sigmoid stay float32")
    outputs_unchanged = False  # mixed precision rounds; a run that changes nothing says True
    structural = True

    def __init__(self, policy: str = "mixed_bfloat16"):
        if policy not in POLICIES:
            raise PassError(f"Expected policy to be one of {list(POLICIES)} (float32 "
                            f"variables). Received: policy={policy!r}")
        self.policy = policy

    def get_config(self) -> dict:
        return {"policy": self.policy}

    def __repr__(self):
        return f"SetDtypePolicy(policy={self.policy!r})"

    def run(self, graph) -> PassResult:
        result = PassResult(self.name, modified=False, outputs_unchanged=True)
        view = View(graph)
        kept = _kept_float32(view) if self.policy != "float32" else {}
        seen = set()
        for node in view.layers():
            spec = node.spec
            if id(spec) in seen or node.is_model:
                continue
            seen.add(id(spec))
            target = "float32" if id(spec) in kept else self.policy
            current, why_not = _current_policy(spec)
            if why_not is not None:
                result.changes.append(Change(spec.name, "skipped",
                                             f"{spec.class_name} left as it is: {why_not}"))
                continue
            config = _with_policy(spec.config, target)
            if (spec.config_error is not None or _holds_map(spec.config)) \
                    and current != target:
                # No config to edit (the rebuild copies the layer object and sets the
                # policy), or a policy map in it: the layer's own policy replaces the map.
                config = {**spec.config, "dtype": _serialized(target)}
            changed = config is not spec.config
            if changed:
                node.set_config(**{k: v for k, v in config.items()
                                   if k != "name" and v is not spec.config.get(k)})
                result.modified = True
            if id(spec) in kept:
                result.changes.append(Change(spec.name, "kept_float32", kept[id(spec)]))
            elif changed:
                note = ""
                if issubclass(spec.cls, SELF_UPCASTING) and target != "float32":
                    note = (f" (Keras computes {spec.class_name} in float32 itself: it "
                            f"upcasts float16/bfloat16 inputs; its variables stay float32)")
                if current == target:  # only layers inside it (a wrapper's) changed
                    note = f" (its inner layers){note}"
                if spec.config_error is not None:
                    note = (f"{note} (its get_config() fails: the layer object is copied and "
                            "the policy set on the copy)")
                result.changes.append(Change(spec.name, "set_dtype_policy",
                                             f"{current} -> {target}{note}"))
        for level in iter_graphs(graph):  # the models' own policies, as Keras would set them
            current = level.graph.get("dtype_policy")
            if current and current.startswith("map_"):  # a loaded quantized model's map:
                current = current[len("map_"):]  # its layers resolve to its default
            if (current in _FLOAT_POLICIES and current != self.policy
                    and kinds.saves_as_arguments(level.graph.get("model_type"))):
                level.graph["dtype_policy"] = self.policy
                result.modified = True
                result.changes.append(Change(level.graph["name"], "set_dtype_policy",
                                             f"{current} -> {self.policy} (the model's own)"))
        if result.modified:
            result.outputs_unchanged = False
            must_fit = graph.graph.setdefault("weights_must_fit", [])
            if self.name not in must_fit:
                must_fit.append(self.name)
        return result


def _current_policy(spec) -> tuple[str | None, str | None]:
    """(policy name, None) for a layer this pass may set, else (None, why not)."""
    if issubclass(spec.cls, _LOOKUPS):
        return None, ("StringLookup and IntegerLookup take their dtype argument as the "
                      "vocabulary's dtype: Keras builds them with a float32 policy from any "
                      "config (they compute on strings or integers, not in float)")
    held = _quantized_or_lora_inside(spec.source)
    if held:
        return None, (f"it holds {held}: its sub-layers keep their own policies, and a new "
                      "policy on it would re-create them without their state")
    if spec.config_error is not None:  # no config: the original layer's policy
        policy = getattr(spec.source, "dtype_policy", None)
        if policy is None:
            return None, f"its {spec.config_error.split(' (')[0]} and it has no dtype policy"
        if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
            policy = _entry(policy, spec.source)
        return _policy_of(keras.dtype_policies.serialize(policy))
    if "dtype" not in spec.config:
        return None, "its config has no 'dtype' entry"
    if isinstance(spec.config["dtype"], str):
        return None, (f"its config holds a plain dtype ({spec.config['dtype']!r}), not a "
                      "policy: a file would reload it with that dtype whatever its policy")
    entry = _map_entry(spec)
    if entry is not None:
        return _policy_of(keras.dtype_policies.serialize(entry))
    return _policy_of(spec.config["dtype"])


def _map_entry(spec):
    """The policy a `DTypePolicyMap` in `spec`'s config gives its layer (Keras looks the
    layer's path up in it; without a path, its default), or None when the config holds no
    map. A quantized KerasHub model loaded from a file holds the map in every layer: its
    float layers resolve to the map's default, which this pass may change like any float
    policy."""
    if not _holds_map(spec.config):
        return None
    try:
        return _entry(keras.dtype_policies.get(spec.config["dtype"]), spec.source)
    except Exception:  # a map Keras cannot read back: left as it is, with _policy_of's reason
        return None


def _holds_map(config) -> bool:
    value = config.get("dtype")
    return isinstance(value, dict) and value.get("class_name") == "DTypePolicyMap"


def _entry(policy_map, layer):
    """What `policy_map` gives `layer`: its path's entry; without a path (a layer never
    built: no weights), the map's default."""
    path = getattr(layer, "path", None)
    return policy_map[path] if path else policy_map.default_policy


_LOOKUPS = (keras.layers.StringLookup, keras.layers.IntegerLookup)


def _quantized_or_lora_inside(layer) -> str | None:
    """What quantized or LoRA sub-layers `layer` holds (a KerasHub block after
    `quantize`/`enable_lora`), in words, or None."""
    if not isinstance(layer, keras.layers.Layer):
        return None
    inner = [sub for sub in layer._flatten_layers(include_self=False, recursive=True)
             if getattr(sub, "quantization_mode", None) or getattr(sub, "lora_enabled", False)]
    if not inner:
        return None
    modes = sorted({getattr(s, "quantization_mode", None) or "LoRA" for s in inner})
    return (f"{len(inner)} {'/'.join(modes)} sub-layer{'s' if len(inner) > 1 else ''} "
            f"({inner[0].name}{', ...' if len(inner) > 1 else ''})")


def _serialized(policy: str):
    return keras.dtype_policies.serialize(keras.DTypePolicy(policy))


def _with_policy(config: dict, target: str) -> dict:
    """`config` (a layer's) with `target` as its policy and as the policy of every layer
    serialized inside it (Bidirectional's ``layer``, TimeDistributed's, RNN's ``cell``: Keras
    re-creates those from their own configs), where `_policy_of` allows; the same object
    when nothing changes, else a new dict (nested values copied only where changed)."""
    changes = {}
    value = config.get("dtype")
    current, why_not = _policy_of(value) if isinstance(value, dict) else (None, "-")
    if why_not is None and current != target:
        changes["dtype"] = _serialized(target)
    for key, value in config.items():
        if key != "dtype":
            new = _nested_with_policy(value, target)
            if new is not value:
                changes[key] = new
    return {**config, **changes} if changes else config


def _nested_with_policy(value, target):
    if isinstance(value, dict):
        inner = value.get("config")
        if ("class_name" in value and isinstance(inner, dict) and "name" in inner
                and "dtype" in inner):  # a serialized layer
            new = _with_policy(inner, target)
            return value if new is inner else {**value, "config": new}
        items = {k: _nested_with_policy(v, target) for k, v in value.items()}
        return value if all(items[k] is value[k] for k in value) else items
    if isinstance(value, (list, tuple)):
        items = [_nested_with_policy(v, target) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    return value


def _policy_of(value) -> tuple[str | None, str | None]:
    """(policy name, None) for a config's ``dtype`` value this pass may change, else
    (None, why not)."""
    try:
        policy = keras.dtype_policies.get(value)
    except Exception as exc:
        return None, f"its dtype {value!r} is not a policy Keras reads ({type(exc).__name__})"
    if type(policy) is not keras.DTypePolicy:
        return None, f"{type(policy).__name__} {policy.name!r} (quantized or per-path policies)"
    if policy.variable_dtype != "float32" or policy.compute_dtype not in _COMPUTE_DTYPES:
        return None, (f"policy {policy.name!r} (variables {policy.variable_dtype}, compute "
                      f"{policy.compute_dtype}); only float policies with float32 variables "
                      "are changed, so its weights keep their dtype")
    return policy.name, None


# Layers that cannot compute in float16/bfloat16 at all, with why (measured, KerasHub 0.32):
# built natively under `set_global_policy("mixed_bfloat16")` they fail the same way.
FLOAT32_ONLY = {
    "MaskedLMHead": ("KerasHub 0.32's MaskedLMHead adds its float32 bias variable to logits "
                     "cast to its compute dtype (InvalidArgumentError in AddV2 in bfloat16, "
                     "also when built natively in mixed precision); kept float32, it computes "
                     "the logits in float32 from its mixed-precision inputs"),
}


def _kept_float32(view) -> dict:
    """{id(layer spec): why} for the layers that produce a model output through softmax/sigmoid,
    with the shape-only layers between them and the output, and the `FLOAT32_ONLY` ones."""
    kept = {id(node.spec): FLOAT32_ONLY[node.class_name] for node in view.layers()
            if node.class_name in FLOAT32_ONLY and not node.is_model}
    for out_id in view.graph.graph["outputs"]:
        path = []
        node, index = view[out_id].inputs[0]
        reason = _through_float32_activation(view, node, index, path)
        if reason is None:
            continue
        source = path[-1]
        for layer in path:
            if layer is source:
                kept[id(layer.spec)] = (f"it produces model output '{out_id}' through {reason}: "
                                    "the Keras mixed-precision guide keeps the output "
                                    "softmax/sigmoid in float32 for numeric stability")
            else:
                kept[id(layer.spec)] = (f"it passes the float32 output of '{source.name}' on to "
                                    f"model output '{out_id}' ({layer.class_name}: shapes only)")
    return kept


def _through_float32_activation(view, node, index, path) -> str | None:
    """Walk back from output `index` of `node` through nested models' outputs and shape-only
    layers; the activation that makes it (appending the layers on the way to `path`), or
    None."""
    for _ in range(1000):  # a model is finite; the bound only guards against a cycle
        if node.is_model:
            inner = node.spec.subgraph
            node, index = view.node(inner, inner.graph["outputs"][index]).inputs[0]
            continue
        if node.kind != "layer":
            return None
        path.append(node)
        if issubclass(node.layer_class, layers.Softmax):
            return "a Softmax layer"
        activation = node.config.get("activation")
        if isinstance(activation, str) and activation in FLOAT32_ACTIVATIONS:
            if issubclass(node.layer_class, layers.Activation):
                return f"Activation({activation!r})"
            return f"its fused activation={activation!r}"
        if not issubclass(node.layer_class, SHAPE_ONLY) or len(node.inputs) != 1:
            return None
        node, index = node.inputs[0]
    return None
