"""Rules about the model as a whole: regularizers against the optimizer's weight decay, L2 on
normalization offsets, layers without a kernel regularizer."""
from __future__ import annotations


import keras

from keras_rewrite.graph import kinds
from keras_rewrite import _keras
from keras_rewrite.rebuild import compile
from keras_rewrite.graph.schema import iter_graphs, topological_order
from keras_rewrite.analysis.lint.rules import Finding, _finding




# Config keys of regularizers on weights (activity_regularizer penalizes outputs, not weights).
_KERNEL_KEYS = ("kernel_regularizer", "depthwise_regularizer", "pointwise_regularizer",
                "embeddings_regularizer", "recurrent_regularizer")
# Config key -> the attribute holding its variable (on the layer, or on its recurrent cell).
_VARIABLE_OF = {"kernel_regularizer": ("kernel",), "bias_regularizer": ("bias",),
                "depthwise_regularizer": ("depthwise_kernel", "kernel"),
                "pointwise_regularizer": ("pointwise_kernel",),
                "embeddings_regularizer": ("embeddings",),
                "recurrent_regularizer": ("recurrent_kernel",),
                "gamma_regularizer": ("gamma",), "beta_regularizer": ("beta",)}
_OFFSET_KEYS = ("bias_regularizer", "gamma_regularizer", "beta_regularizer")
_NORMALIZATIONS = kinds.NORMALIZATIONS


def _layer_specs(graph):
    """Each layer's spec once (a shared layer is one spec), nested models' layers included."""
    seen = set()
    for g in iter_graphs(graph):
        for node_id in topological_order(g):
            data = g.nodes[node_id]
            spec = data["spec"]
            if (data["kind"] == "layer" and spec is not None and spec.subgraph is None
                    and id(spec) not in seen):
                seen.add(id(spec))
                yield spec


def _sublayers(spec) -> list:
    source = spec.source
    if not isinstance(source, keras.layers.Layer):
        return []
    try:
        return _keras.sublayers(source)
    except Exception:  # a layer whose tracking is unusual: nothing to read
        return [source]


def _variable(layer, attrs):
    """The first of `attrs` that is a variable of `layer` or of its recurrent cell."""
    for owner in (layer, getattr(layer, "cell", None)):
        for attr in attrs:
            try:
                value = getattr(owner, attr, None) if owner is not None else None
            except Exception:  # a property that fails (a quantized layer, say)
                value = None
            if isinstance(value, keras.Variable):
                return value
    return None


def _offset_variables(spec):
    """(sub-layer, variable) of every trainable bias and normalization γ/β in `spec`'s layer
    (its sub-layers at any depth included)."""
    found, seen = [], set()
    for sub in _sublayers(spec):
        attrs = ("bias", "gamma", "beta") if isinstance(sub, _NORMALIZATIONS) else ("bias",)
        for attr in attrs:
            try:
                variable = getattr(sub, attr, None)
            except Exception:
                variable = None
            if (isinstance(variable, keras.Variable) and variable.trainable
                    and id(variable) not in seen):
                seen.add(id(variable))
                found.append((sub, variable))
    return found


def _regularizers(spec):
    """(config key or variable path, regularizer) of every weight regularizer `spec`'s layer
    has: in its config, in `sublayer_regularizers`, or on its (sub-layers') variables."""
    config = spec.config
    found = [(k, v) for k, v in config.items()
             if k.endswith("_regularizer") and k != "activity_regularizer" and v is not None]
    found += [(key, serialized) for (_, key), (_, _, serialized)
              in spec.sublayer_regularizers.items()]
    for sub in _sublayers(spec):
        for variable in getattr(sub, "trainable_weights", None) or []:
            regularizer = getattr(variable, "regularizer", None)
            if regularizer is not None:
                found.append((variable.path, regularizer))
    return found


def _l2_coefficient(regularizer) -> float:
    """The L2 part of a regularizer (an object or its serialized config), 0 if none."""
    if isinstance(regularizer, (keras.regularizers.L2, keras.regularizers.L1L2)):
        return float(regularizer.l2)
    if isinstance(regularizer, dict) and regularizer.get("class_name") in ("L2", "L1L2"):
        return float((regularizer.get("config") or {}).get("l2") or 0.0)
    if isinstance(regularizer, str) and regularizer.lower() in ("l2", "l1_l2"):
        return 0.01  # keras.regularizers.get("l2"): L2(0.01)
    return 0.0


def _optimizer_text(optimizer) -> str:
    extra = ""
    momentum = getattr(optimizer, "momentum", None)
    if isinstance(optimizer, keras.optimizers.SGD) and momentum is not None:
        extra = f", momentum={float(momentum):g}"
    return f"{type(optimizer).__name__}(weight_decay={float(optimizer.weight_decay):g}{extra})"


def _names(values, limit=3) -> str:
    values = list(dict.fromkeys(values))
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _model_rules(graph, optimizer) -> list[Finding]:
    specs = list(_layer_specs(graph))
    decay = float(getattr(optimizer, "weight_decay", None) or 0.0) if optimizer else 0.0
    regularizers = {spec.name: _regularizers(spec) for spec in specs}
    findings = []

    if not decay and not any(regularizers.values()):
        candidates = [s.name for s in specs if any(k in s.config for k in _KERNEL_KEYS)]
        if candidates:
            findings.append(_finding("no-weight-regularization", candidates, "l2"))

    if decay:
        with_l2 = {name: sorted({_l2_coefficient(r) for _, r in regs} - {0.0})
                   for name, regs in regularizers.items()}
        with_l2 = {name: c for name, c in with_l2.items() if c}
        if with_l2:
            coefficients = sorted({c for cs in with_l2.values() for c in cs})
            shown = ", ".join(f"{c:g}" for c in coefficients[:3])
            as_decay = ", ".join(f"{2 * c:g}" for c in coefficients[:3])
            findings.append(_finding(
                "l2-with-weight-decay", list(with_l2), None,
                f"optimizer {_optimizer_text(optimizer)}; L2 coefficient(s) {shown} on "
                f"{len(with_l2)} layers, which with plain SGD are weight_decay {as_decay}"))
        decayed = [(spec.name, variable) for spec in specs
                   for _, variable in _offset_variables(spec)
                   if compile.weight_decay_applies(optimizer, variable)]
        if decayed:
            findings.append(_finding(
                "weight-decay-on-bias-or-norm", [name for name, _ in decayed], None,
                f"optimizer {_optimizer_text(optimizer)} decays {len(decayed)} biases and γ/β "
                f"variables, e.g. {_names(v.path for _, v in decayed)}"))

    on_offsets = []
    for spec in specs:
        keys = [k for k in _OFFSET_KEYS if spec.config.get(k) is not None]
        keys += [key for (_, key) in spec.sublayer_regularizers if key == "bias_regularizer"]
        keys += [v.path for _, v in _offset_variables(spec)
                 if getattr(v, "regularizer", None) is not None]
        if keys:
            on_offsets.append((spec.name, keys))
    if on_offsets:
        findings.append(_finding(
            "regularizer-on-bias-or-norm", [name for name, _ in on_offsets], None,
            "regularized: " + _names(f"{name}: {', '.join(dict.fromkeys(keys))}"
                                     for name, keys in on_offsets)))

    without_effect, not_saved = [], []
    for spec in specs:
        original = spec.original_config or {}
        if not isinstance(spec.source, keras.layers.Layer):
            continue
        for key, attrs in _VARIABLE_OF.items():
            variable = _variable(spec.source, attrs)
            if variable is None or key not in original:
                continue
            on_variable = getattr(variable, "regularizer", None) is not None
            if original[key] is not None and not on_variable:
                without_effect.append((spec.name, key))
            elif original[key] is None and on_variable:
                not_saved.append((spec.name, variable.path))
    if without_effect:
        findings.append(_finding(
            "regularizer-without-effect", [name for name, _ in without_effect], None,
            "in the config but not on the variable: "
            + _names(f"{name}.{key}" for name, key in without_effect)))
    if not_saved:
        findings.append(_finding(
            "regularizer-not-saved", list(dict.fromkeys(name for name, _ in not_saved)), None,
            "on the variable but not in the config: " + _names(path for _, path in not_saved)))
    return findings
