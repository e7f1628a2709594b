"""`L2Regularization`: add L2 weight decay to every weight kernel of a model.

The math it relies on: Keras's ``L2(c)`` adds ``c * sum(W ** 2)`` (no factor 1/2) to the
training loss for each regularized trainable variable ``W``. Regularizers are read only when
the training loss is computed, never by a forward pass, so inference outputs are unchanged.

Two ways to apply it, sharing one decision (which layer, which weight, which coefficient):

- as a graph pass (`rewrite(model, [L2Regularization(...)])`): it edits each layer's config
  (``config["kernel_regularizer"] = serialized L2(c)``); the rebuilt model's layers are created
  with the regularizer, so it counts in the loss, shows in `get_config` and survives saving;
- in place on a live, built model (`apply_in_place`, used by `RewriteCallback`): a built
  layer's ``kernel_regularizer`` attribute only shows in `get_config` (it takes effect after a
  rebuild), while the variable's ``.regularizer`` is what the loss reads but is lost on saving,
  so both are set.

Which weights are kernels (config key -> variable):

==========================================  ===============================================
Dense, EinsumDense, Conv1D/2D/3D,           kernel_regularizer -> kernel
Conv1D/2D/3DTranspose
DepthwiseConv1D/2D                          depthwise_regularizer -> kernel
SeparableConv1D/2D                          depthwise_regularizer -> depthwise_kernel,
                                            pointwise_regularizer -> pointwise_kernel
Embedding                                   embeddings_regularizer -> embeddings
LSTM, GRU, SimpleRNN, ConvLSTM1D/2D/3D      kernel_regularizer -> cell.kernel,
                                            recurrent_regularizer -> cell.recurrent_kernel
LSTMCell, GRUCell, SimpleRNNCell            kernel_regularizer -> kernel,
(inside RNN(cell))                          recurrent_regularizer -> recurrent_kernel
==========================================  ===============================================

Left without L2, each with the reason in the report (read on the original layer): a
quantized int8/int4 kernel (integers with a scale, not trainable: Keras counts regularizers
of trainable variables only, so L2 would add nothing to the loss; float8 kernels are float32
and trainable and get L2), a kernel variable frozen by itself, and the kernel of a
LoRA-enabled layer. On LoRA the decision is: no L2 on lora_kernel_a/b either. Keras's
`enable_lora` would give them ``kernel_regularizer``, but L2 on the two factors is another
penalty than L2 on the kernel they adapt (it is not `||A @ B||²`), so "L2 on every kernel"
does not silently become it; the layer is left untouched, and exact. (A LoRA layer a pass
does change is carried variable by variable: Keras's save protocol would merge ``A @ B``
into the kernel.)

Subclasses of these classes are handled like them. With ``include_biases=True`` the bias
(``bias_regularizer -> bias``) is added where the layer has one.

Kernels in sub-layers, at any depth, get L2 too: MultiHeadAttention's query/key/value/output
EinsumDense layers, the layer inside Bidirectional / TimeDistributed / RNN(cell), and the
Dense/Conv/Embedding layers inside custom layers (keras.io transformer blocks, every KerasHub
encoder and decoder block). The layer's config does not describe them, so the graph keeps
them in ``spec.sublayer_regularizers`` and the rebuild sets them on the new sub-layers (the
attribute and the variable's regularizer); the report names each as ``layer/sub_layer``.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import numbers
import re
from typing import Iterator

import keras
from keras import layers

from keras_rewrite import _keras
from keras_rewrite.passes import live
from keras_rewrite.errors import PassError
from keras_rewrite.graph.schema import to_graph
from keras_rewrite.graph.view import Node, View
from keras_rewrite.passes.base import Change, Pass, PassResult

__all__ = ["L2Regularization"]


@dataclasses.dataclass(frozen=True)
class _Weight:
    """One regularizable weight of a layer kind."""

    key: str  # config key; also the attribute name on the owner (the layer, or its cell)
    variable: str  # the owner's attribute holding the variable
    is_bias: bool = False


@dataclasses.dataclass(frozen=True)
class _Kind:
    weights: tuple
    in_cell: bool = False  # recurrent layers keep weights and regularizers on `layer.cell`


_KERNEL = _Weight("kernel_regularizer", "kernel")
_BIAS = _Weight("bias_regularizer", "bias", is_bias=True)
_DENSE_LIKE = _Kind((_KERNEL, _BIAS))
_RECURRENT = _Kind((_KERNEL, _Weight("recurrent_regularizer", "recurrent_kernel"), _BIAS),
                   in_cell=True)

# Public classes only; a layer's kind is that of the first class of its MRO listed here.
_KINDS: dict[type, _Kind] = {
    layers.Dense: _DENSE_LIKE,
    layers.EinsumDense: _DENSE_LIKE,
    **{cls: _DENSE_LIKE for cls in (layers.Conv1D, layers.Conv2D, layers.Conv3D,
                                    layers.Conv1DTranspose, layers.Conv2DTranspose,
                                    layers.Conv3DTranspose)},
    **{cls: _Kind((_Weight("depthwise_regularizer", "kernel"), _BIAS))
       for cls in (layers.DepthwiseConv1D, layers.DepthwiseConv2D)},
    **{cls: _Kind((_Weight("depthwise_regularizer", "depthwise_kernel"),
                   _Weight("pointwise_regularizer", "pointwise_kernel"), _BIAS))
       for cls in (layers.SeparableConv1D, layers.SeparableConv2D)},
    layers.Embedding: _Kind((_Weight("embeddings_regularizer", "embeddings"),)),
    **{cls: _RECURRENT for cls in (layers.LSTM, layers.GRU, layers.SimpleRNN,
                                   layers.ConvLSTM1D, layers.ConvLSTM2D, layers.ConvLSTM3D)},
    # A cell in a generic RNN(cell) wrapper holds its weights itself.
    **{cls: _Kind(_RECURRENT.weights) for cls in (layers.LSTMCell, layers.GRUCell,
                                                  layers.SimpleRNNCell)},
}


def _kind_of(cls) -> _Kind | None:
    for base in cls.__mro__:
        if base in _KINDS:
            return _KINDS[base]
    return None


def _describe(serialized) -> str:
    """'L2(0.0001)' for a serialized regularizer (what `get_config` holds)."""
    if not isinstance(serialized, dict):
        return repr(serialized)
    args = ", ".join(f"{v!r}" if len(serialized.get("config") or {}) == 1 else f"{k}={v!r}"
                     for k, v in (serialized.get("config") or {}).items())
    return f"{serialized.get('class_name', '?')}({args})"


def _serialized_l2(coefficient: float) -> dict:
    return keras.saving.serialize_keras_object(keras.regularizers.L2(coefficient))


def _is_float_ge_0(value) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)) and float(value) >= 0)


@dataclasses.dataclass
class _Site:
    """A layer with regularizable weights, once per layer (shared layers are one spec).

    A kernel held by a sub-layer (MultiHeadAttention's query/key/value/output, the layer
    inside Bidirectional or TimeDistributed, the Dense layers of a custom transformer block)
    is a site of its own: `sub_index` is its position in the layer's
    ``_keras.sublayers(layer)`` and `sub` the original sub-layer.
    """

    node: Node  # the layer's first call
    kind: _Kind | None
    scope: tuple  # names of the nested models containing it, innermost first
    sub_index: int = 0  # 0: the layer itself
    sub: object = None

    @property
    def spec(self):
        return self.node.spec

    @property
    def label(self) -> str:
        return self.spec.name if not self.sub_index else f"{self.spec.name}/{self.sub.name}"

    @property
    def cls(self):
        return self.spec.cls if not self.sub_index else type(self.sub)

    @property
    def config(self):
        return self.node.config if not self.sub_index else self.sub.get_config()

    @property
    def layer(self):
        """The original (live) layer or sub-layer holding the weights."""
        return self.spec.source if not self.sub_index else self.sub


@dataclasses.dataclass
class _Assignment:
    """The decision for one weight of one layer."""

    weight: _Weight
    coefficient: float
    status: str  # "add", "replace", "same" (already this L2), "keep" (another regularizer)
    existing: dict | None  # the serialized regularizer the layer had


@dataclasses.dataclass
class _Decision:
    site: _Site
    assignments: list  # of _Assignment; empty when the whole layer is skipped
    skip_reason: str = ""
    source: str = ""  # where the coefficient came from: "factor" or "per_layer['...']"
    note: str = ""  # what the regularizer acts on, when not the plain kernel (LoRA)


class L2Regularization(Pass):
    """Add L2 regularizers to every weight kernel, keeping the model's trained weights.

    Args:
        factor: the L2 coefficient ``c`` of every kernel not named in `per_layer`; each kernel
            adds ``c * sum(W ** 2)`` to the training loss. A finite float >= 0 (0: only the
            layers `per_layer` names get a regularizer).
        per_layer: maps layer names or `fnmatch` glob patterns (``"conv2d_*"``) to
            coefficients; 0 leaves a layer alone. A layer's exact name wins over any glob;
            among globs the most specific wins (the one with the most literal characters, not
            counting ``*``, ``?`` and ``[...]``); equally specific globs giving one layer
            different coefficients are an error. The name of a nested model applies to the
            layers inside it, unless a pattern matches the layer's own name. Case-sensitive.
            A pattern matching no layer with a kernel is an error listing the nearest names.
        layer_types: only regularize layers of these classes (or their subclasses), given as
            classes or class names such as ``"Conv2D"``; None means every supported class.
            `per_layer` cannot bring back a layer this excludes.
        include_biases: also regularize biases, with the same coefficient.
        existing: what to do with a weight that already has a regularizer: "keep" it
            (default; reported as "kept existing regularizer") or "replace" it with the L2.

    Running it twice is the same as running it once: a weight that already has the very
    same L2 is left alone and the second run reports ``modified=False``.

    Example:
        >>> import keras_rewrite
        >>> from keras_rewrite.passes import L2Regularization
        >>> new_model = keras_rewrite.rewrite(  # doctest: +SKIP
        ...     model, [L2Regularization(1e-4, per_layer={"conv2d": 1e-5, "head_*": 0})])
        >>> float(sum(new_model.losses)) > 0  # doctest: +SKIP
        True
    """

    short_name = "l2"
    summary = "L2 on every kernel, in sub-layers at any depth too; per-layer coefficients by name or glob"
    outputs_unchanged = True  # declared; each run reports its own verdict

    structural = False

    def __init__(self, factor=1e-4, per_layer=None, layer_types=None, include_biases=False,
                 existing="keep"):
        if not _is_float_ge_0(factor):
            raise PassError(f"{self.name}: invalid value for argument `factor`. Expected a "
                            f"float >= 0. Received: factor={factor!r}")
        self.factor = float(factor)
        self.per_layer = self._check_per_layer(per_layer)
        self.layer_types = self._check_layer_types(layer_types)
        if not isinstance(include_biases, bool):
            raise PassError(f"{self.name}: invalid value for argument `include_biases`. "
                            f"Expected True or False. Received: include_biases={include_biases!r}")
        self.include_biases = include_biases
        if existing not in ("keep", "replace"):
            raise PassError(f"{self.name}: invalid value for argument `existing`. Expected "
                            f"'keep' or 'replace'. Received: existing={existing!r}")
        self.existing = existing

    def get_config(self) -> dict | None:
        names = None
        if self.layer_types is not None:
            names = [cls.__name__ for cls in self.layer_types]
            if any(cls not in _KINDS for cls in self.layer_types):
                return None  # a user's subclass: no name re-creates it
        return {"factor": self.factor, "per_layer": dict(self.per_layer), "layer_types": names,
                "include_biases": self.include_biases, "existing": self.existing}

    def __repr__(self):
        return (f"{self.name}(factor={self.factor!r}, per_layer={self.per_layer!r}, "
                f"layer_types={self.layer_types!r}, include_biases={self.include_biases!r}, "
                f"existing={self.existing!r})")

    # ------------------------------------------------------------------ argument checks

    def _check_per_layer(self, per_layer) -> dict:
        if per_layer is None:
            return {}
        if not isinstance(per_layer, dict):
            raise PassError(f"{self.name}: invalid value for argument `per_layer`. Expected a "
                            f"dict of layer name or glob -> float >= 0. Received: "
                            f"per_layer={per_layer!r}")
        checked = {}
        for pattern, coefficient in per_layer.items():
            if not isinstance(pattern, str) or not pattern:
                raise PassError(f"{self.name}: invalid key in `per_layer`. Expected a layer "
                                f"name or glob pattern (a non-empty str). Received: {pattern!r}")
            if not _is_float_ge_0(coefficient):
                raise PassError(f"{self.name}: invalid value for per_layer[{pattern!r}]. "
                                f"Expected a float >= 0. Received: {coefficient!r}")
            checked[pattern] = float(coefficient)
        return checked

    def _check_layer_types(self, layer_types):
        if layer_types is None:
            return None
        if isinstance(layer_types, (str, type)):
            layer_types = [layer_types]
        by_name = {cls.__name__: cls for cls in _KINDS}
        resolved = []
        for item in layer_types:
            if isinstance(item, str):
                if item not in by_name:
                    near = difflib.get_close_matches(item, by_name, n=3)
                    hint = f" Did you mean {near}?" if near else ""
                    raise PassError(
                        f"{self.name}: invalid entry in `layer_types`. Expected a layer class "
                        f"or one of {sorted(by_name)}. Received: {item!r}.{hint}")
                resolved.append(by_name[item])
            elif isinstance(item, type) and issubclass(item, layers.Layer):
                if _kind_of(item) is None:
                    raise PassError(
                        f"{self.name}: invalid entry in `layer_types`: {item.__name__} has no "
                        f"weight kernel this pass regularizes. Expected one of "
                        f"{sorted(by_name)} or a subclass. Received: {item.__name__}")
                resolved.append(item)
            else:
                raise PassError(f"{self.name}: invalid entry in `layer_types`. Expected a "
                                f"keras layer class or class name. Received: {item!r}")
        return tuple(resolved)

    # ------------------------------------------------------------------ the shared decision

    @staticmethod
    def _sites(view: View) -> Iterator[_Site]:
        """Each layer of the view with kernels (nested models' too), once per layer."""
        scopes = {id(view.graph): ()}  # graph -> names of the models containing it
        seen = set()
        for node in view.layers():
            spec = node.spec
            if id(spec) in seen:
                continue
            seen.add(id(spec))
            scope = scopes[id(node.graph)]
            if node.is_model:
                scopes[id(spec.subgraph)] = (spec.name, *scope)  # walked right after the call
            elif _kind_of(spec.cls) is not None:
                yield _Site(node, _kind_of(spec.cls), scope)
            elif isinstance(spec.source, layers.Layer):
                yield from _sublayer_sites(node, scope)

    def _coefficient(self, site: _Site) -> tuple[float, str]:
        """(coefficient, where it came from) for a layer: see `per_layer` in the docstring."""
        names = (site.label, site.spec.name, *site.scope) if site.sub_index else \
            (site.spec.name, *site.scope)
        for name in names:
            if name in self.per_layer:
                return self.per_layer[name], f"per_layer[{name!r}]"
            matches = [p for p in self.per_layer if fnmatch.fnmatchcase(name, p)]
            if not matches:
                continue
            best = max(_specificity(p) for p in matches)
            top = [p for p in matches if _specificity(p) == best]
            if len({self.per_layer[p] for p in top}) > 1:
                raise PassError(
                    f"{self.name}: per_layer patterns {top} are equally specific and all match "
                    f"layer '{name}' with different coefficients "
                    f"{[self.per_layer[p] for p in top]}. Expected one most specific pattern; "
                    "add the exact layer name to per_layer to decide.")
            return self.per_layer[top[0]], f"per_layer[{top[0]!r}]"
        return self.factor, "factor"

    def _check_patterns_match(self, sites: list) -> None:
        names = {s.spec.name for s in sites if s.kind is not None}
        names |= {scope_name for s in sites if s.kind is not None for scope_name in s.scope}
        for pattern in self.per_layer:
            if pattern in names or any(fnmatch.fnmatchcase(n, pattern) for n in names):
                continue
            near = difflib.get_close_matches(pattern, sorted(names), n=5, cutoff=0.5)
            listing = (f"nearest layer names: {near}" if near else
                       f"layers with kernels include: {sorted(names)[:10]}")
            raise PassError(f"{self.name}: per_layer pattern {pattern!r} matches no layer with "
                            f"a weight kernel; {listing}")

    def _decide(self, sites: list, existing_of) -> list[_Decision]:
        """What to do with each site. `existing_of(site, weight)` gives the serialized
        regularizer a weight has now (None if none)."""
        self._check_patterns_match(sites)
        decisions = []
        for site in sites:
            if self.layer_types is not None and not issubclass(site.cls, self.layer_types):
                decisions.append(_Decision(site, [], f"{site.cls.__name__} is not in "
                                                     "layer_types"))
                continue
            coefficient, source = self._coefficient(site)
            if coefficient == 0:
                decisions.append(_Decision(site, [], f"coefficient 0 from {source}", source))
                continue
            wanted = _serialized_l2(coefficient)
            assignments, left, notes = [], [], []
            for weight in site.kind.weights:
                if weight.is_bias and not (self.include_biases and _has_bias(site.config)):
                    continue
                why, note = _state_of_weight(site, weight)
                if why is not None:
                    left.append(why)
                    continue
                if note:
                    notes.append(note)
                existing = existing_of(site, weight)
                if existing is None:
                    status = "add"
                elif existing == wanted:
                    status = "same"
                else:
                    status = "replace" if self.existing == "replace" else "keep"
                assignments.append(_Assignment(weight, coefficient, status, existing))
            decisions.append(_Decision(site, assignments, "; ".join(left), source,
                                       "; ".join(notes)))
        return decisions

    # ------------------------------------------------------------------ the two ways to apply

    def run(self, graph) -> PassResult:
        """Set the regularizers in the layer configs of `graph` (and its nested models)."""
        view = View(graph)
        sites = list(self._sites(view))
        decisions = self._decide(sites, _graph_existing)
        result = PassResult(self.name, modified=False, outputs_unchanged=True)
        for decision in decisions:
            site = decision.site
            for a in decision.assignments:
                if a.status not in ("add", "replace"):
                    continue
                if site.sub_index:  # not in the layer's config: the rebuild sets it
                    view.set_sublayer_regularizer(site.node, site.sub_index, a.weight.key,
                                                  a.weight.variable, site.kind.in_cell,
                                                  _serialized_l2(a.coefficient))
                else:
                    view.set_config(site.node, **{a.weight.key: _serialized_l2(a.coefficient)})
            result.changes.append(self._change(decision, {}))
        result.changes.extend(_uncovered_kernels(view, decisions))
        result.modified = any(c.action != "skipped" for c in result.changes)
        return result

    def apply_in_place(self, model) -> PassResult:
        """Set the regularizers on a live, built model's layers, effective in its next `fit`.

        Both the layer attribute (``layer.kernel_regularizer``: shown by `get_config`, kept
        by saving) and the variable's ``regularizer`` (what the loss reads) are set. A model
        whose train function was already traced only sees them once it is rebuilt
        (``model.make_train_function(force=True)``; `RewriteCallback` does that).

        Args:
            model: a built Functional or Sequential model; it is modified.

        Returns:
            The `PassResult`, as `run` reports it.
        """
        sites = list(self._sites(View(to_graph(model))))
        decisions = self._decide(sites, _live_existing)
        result = PassResult(self.name, modified=False, outputs_unchanged=True)
        for decision in decisions:
            notes = {}
            site = decision.site
            for a in decision.assignments:
                declared, effective = live.live_regularizers(
                    site.layer, a.weight.key, a.weight.variable, site.kind.in_cell)
                if a.status in ("add", "replace"):
                    declared = effective = keras.regularizers.L2(a.coefficient)
                elif declared is not None and effective is None:
                    # Declared only: it would count in the loss only after a rebuild.
                    effective = declared
                    notes[a.weight.key] = "set on the variable too, where it was missing"
                elif declared is None and effective is not None:
                    # On the variable only: it would be lost on saving.
                    declared = effective
                    notes[a.weight.key] = "set on the layer too, so it is saved"
                else:
                    continue
                if not live.set_live_regularizer(site.layer, a.weight.key, a.weight.variable,
                                                   site.kind.in_cell, declared, effective):
                    notes[a.weight.key] = (f"'{a.weight.variable}' is not a variable here "
                                           "(quantized or LoRA?), so only the config has it")
            result.changes.append(self._change(decision, notes))
        result.modified = any(c.action != "skipped" for c in result.changes)
        return result

    def _change(self, decision: _Decision, notes: dict) -> Change:
        spec = decision.site.spec
        label = decision.site.label
        if not decision.assignments:
            return Change(label, "skipped", decision.skip_reason or "no weight to regularize")
        parts, changed = [], bool(notes)
        for a in decision.assignments:
            key = a.weight.key
            l2 = _describe(_serialized_l2(a.coefficient))
            if a.status == "add":
                text, changed = f"{key}={l2}", True
            elif a.status == "replace":
                text, changed = f"{key}={l2}, replacing {_describe(a.existing)}", True
            elif a.status == "same":
                text = f"{key} already {l2}"
            else:
                text = f"{key}: kept existing regularizer {_describe(a.existing)}"
            if key in notes:
                text += f" ({notes[key]})"
            parts.append(text)
        detail = "; ".join(parts)
        if changed:
            detail += f" (coefficient from {decision.source})"
            if decision.note:
                detail += f"; {decision.note}"
            if spec.config.get("trainable") is False:
                detail += ("; the layer is frozen (trainable=False), so its penalty counts "
                           "only once it is unfrozen")
        if decision.skip_reason:  # some weights of the layer were left out
            detail += f"; left without L2: {decision.skip_reason}"
        return Change(label, "added_regularizer" if changed else "skipped", detail)


_QUANTIZED_INTEGER = ("int8", "int4", "gptq", "awq")


def _state_of_weight(site: _Site, weight: _Weight) -> tuple[str | None, str]:
    """(why L2 would add nothing for this weight of the live layer, or None; a note on
    what it acts on). Read on the original layer: a quantized kernel holds integers with a
    scale and is not trainable (Keras counts regularizers of trainable variables only)."""
    layer = site.layer
    if layer is None or not hasattr(layer, "weights"):
        return None, ""
    mode = getattr(layer, "quantization_mode", None)
    lora = bool(getattr(layer, "lora_enabled", False))
    if not weight.is_bias and mode in _QUANTIZED_INTEGER and not lora:
        return (f"{weight.variable} is {mode}-quantized ({mode} values with a scale, not "
                "trainable): L2 would add nothing to the loss"), ""
    if not weight.is_bias and lora:
        return (f"{weight.variable} has LoRA (rank {layer.lora_rank}"
                f"{', ' + mode + '-quantized' if mode else ''}): the kernel is frozen, and L2 "
                "on lora_kernel_a/b is another penalty than L2 on the kernel they adapt; "
                "left as it is"), ""
    variable = live.regularized_variable(layer, weight.variable, site.kind.in_cell)
    if getattr(variable, "trainable", True) is False and getattr(layer, "trainable", True):
        return (f"variable '{weight.variable}' is not trainable (frozen by itself): L2 would "
                "add nothing to the loss"), ""
    return None, ""


def _specificity(pattern: str) -> int:
    """How many characters of a name a glob pins down: its literal characters."""
    return len(re.sub(r"\[[^\]]*\]|[*?]", "", pattern))


def _has_bias(config: dict) -> bool:
    # Dense/Conv/RNN say use_bias; EinsumDense has a bias only when bias_axes is set.
    return bool(config.get("use_bias", True)) and config.get("bias_axes", "") is not None


def _sublayer_sites(node: Node, scope) -> Iterator[_Site]:
    """The kernels a layer holds in sub-layers, at any depth (see `_Site`)."""
    subs = _keras.sublayers(node.spec.source)
    inside = set()  # sub-layers of a site (an LSTM's cell): the site already covers them
    for index, sub in enumerate(subs[1:], start=1):
        kind = _kind_of(type(sub))
        if kind is not None and id(sub) not in inside:
            inside.update(id(s) for s in _keras.sublayers(sub, include_self=False))
            yield _Site(node, kind, scope, index, sub)


def _uncovered_kernels(view: View, decisions) -> list[Change]:
    """A "skipped" change for every kernel-like variable no site covers, with the reason.

    Kernel-like: a variable named like a kernel or an embedding table, in any layer, e.g. a
    custom layer's own ``self.add_weight(name="kernel")`` or KerasHub's PositionEmbedding.
    """
    covered = set()
    for decision in decisions:
        site = decision.site
        if getattr(site.layer, "lora_enabled", False) or getattr(
                site.layer, "quantization_mode", None):
            # Its decision (L2 on the LoRA factors, or why not) already names these.
            covered.update(id(v) for v in getattr(site.layer, "weights", ()))
        for weight in site.kind.weights if site.kind else ():
            covered.add(id(live.regularized_variable(site.layer, weight.variable,
                                                       site.kind.in_cell)))
    changes, seen = [], set()
    for node in view.layers():
        spec = node.spec
        if id(spec) in seen or node.is_model or not isinstance(spec.source, layers.Layer):
            continue
        seen.add(id(spec))
        for sub in _keras.sublayers(spec.source):
            for variable in _keras.own_variables(sub, trainable_only=True):
                name = variable.name.lower()
                if id(variable) in covered or not ("kernel" in name or "embedding" in name):
                    continue
                label = spec.name if sub is spec.source else f"{spec.name}/{sub.name}"
                changes.append(Change(
                    label, "skipped",
                    f"variable '{variable.name}' left without L2: {type(sub).__name__} "
                    "holds it itself and has no regularizer setting this pass knows"))
    return changes


def _graph_existing(site: _Site, weight: _Weight):
    """The regularizer a weight has in the graph: its config's, or a sub-layer's."""
    if not site.sub_index:
        return site.config.get(weight.key)
    pending = site.spec.sublayer_regularizers.get((site.sub_index, weight.key))
    return pending[2] if pending else _live_existing(site, weight)


def _live_existing(site: _Site, weight: _Weight):
    """A live layer's current regularizer: its attribute, or failing that its variable's."""
    declared, effective = live.live_regularizers(site.layer, weight.key, weight.variable,
                                                   site.kind.in_cell)
    regularizer = declared if declared is not None else effective
    return None if regularizer is None else keras.saving.serialize_keras_object(regularizer)
