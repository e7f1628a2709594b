"""`lint`: explain, in plain words, layer orders and settings that work against a model.

Each `Finding` names the layers involved, explains the problem in one paragraph (`RULES`), and
says which registered pass fixes it (``fixed_by``, a short name of
`keras_rewrite.passes.registry.passes`) — or None when it needs a change no pass makes (of
design, or of the optimizer, which is not part of the graph). ``lint(model, fix=True)``
applies the fixing passes and returns the fixed model with a `LintReport`.

Profiles: what the model is for. ``"training"`` (default) checks the rules of the seed answers
(../shared/seeds/README.md) and of regularization; ``"inference"`` checks what to remove or
fold before deployment (the training rules do not matter there: dropout is off and no loss is
computed).

=============================  ==================================================  ====================
rule                           fires on                                            fixed_by
=============================  ==================================================  ====================
**training**
bn-after-dropout               BatchNormalization whose input is a Dropout or      "reorder" (*)
                               SpatialDropout output
dropout-on-feature-maps        plain Dropout (no noise_shape) on a rank 3/4/5      "spatial_dropout"
                               tensor
dropout-before-pooling         plain Dropout (no noise_shape) followed by          "reorder" (*), else
                               MaxPooling, directly or through BN/activation/      "spatial_dropout"
                               dropout layers
activation-before-bn           BatchNormalization after an activation (a layer,    "reorder" (*)
                               or a conv/dense layer's fused activation),
                               directly or through pooling/dropout layers
no-weight-regularization       no weight of any layer has a regularizer (and the   "l2"
                               optimizer has no weight_decay), though some layers
                               could have one
bn-soon-after-dropout          BatchNormalization with fewer than two conv/dense   None
                               layers between it and a dropout upstream (and not
                               right after it: that is bn-after-dropout)
l2-with-weight-decay (**)      L2 regularizers on weights and an optimizer with    None
                               weight_decay: the layers with L2
weight-decay-on-bias-or-norm   the optimizer's weight_decay reaches biases or      None
(**)                           normalization γ/β (not excluded with
                               exclude_from_weight_decay): their layers
regularizer-on-bias-or-norm    a bias_regularizer, gamma_regularizer or            None
                               beta_regularizer (config, sub-layer or variable)
regularizer-without-effect     a regularizer in a layer's config whose variable    None (***)
                               has none: set on the built layer, it is not in
                               model.losses
regularizer-not-saved          a regularizer on a variable (variable.regularizer   None
                               = ...) that the layer's config does not hold: it
                               counts in the loss, but saving or any rebuild
                               loses it
bias-before-bn                 a conv/dense layer with use_bias=True and no        "drop_bias_before_bn"
                               activation directly before BatchNormalization over
                               its channels, its output used nowhere else
**inference**
foldable-batchnorm             BatchNormalization that `FoldBatchNorm` would fold  "fold_batchnorm"
                               into the conv/dense layer before it
training-only-layer            Dropout, SpatialDropout, GaussianNoise,             "strip_inference"
                               GaussianDropout, AlphaDropout,                      (None if it cannot
                               ActivityRegularization                              be removed)
=============================  ==================================================  ====================

(*) only when `ReorderBlocks` with its default order would actually reorder those layers (they
are in one of its blocks and the move is safe, see `keras_rewrite.passes.reorder.find_blocks`);
otherwise None (or "spatial_dropout" for dropout-before-pooling: whole-channel dropout makes
the order irrelevant).
(**) needs the optimizer: `lint` reads ``model.optimizer`` (a compiled model, or a ``.keras``
file saved compiled); `lint_graph` on a bare graph skips these rules.
(***) every rebuild re-creates the layer from its config, with the regularizer in effect: the
model ``lint(model, fix=True)`` returns, `keras_rewrite.rewrite(model)`, or saving and loading.
A model loaded from a file never has this finding.

The math the regularization rules state: Keras's ``L2(λ)`` adds ``λ·Σw²`` to the loss, so its
gradient is ``2λ·w``; a Keras 3 optimizer with ``weight_decay=d`` (any of them: ``Adam`` with
``weight_decay`` is AdamW) first does ``w ← w − η·d·w`` (η the current learning rate), then its
gradient step. With SGD and momentum 0 the two are the same update: ``L2(λ)`` is
``weight_decay=2λ``, and both together decay by ``η·(2λ + d)`` per step. With momentum μ the L2
gradient also builds up in the velocity (up to ``1/(1−μ)`` times) while the decay does not;
with Adam the L2 gradient is divided by the adaptive scale ``√v̂ + ε`` while the decay is not,
so the two stack and act differently.

Rules look at one model graph at a time: nested models are linted too, but a path that
crosses a nested model's boundary is not followed. Only the exact Keras classes count (the
categories of `keras_rewrite.passes.reorder`), like the pass.

Example:
    >>> import keras
    >>> from keras import layers
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = layers.Conv2D(4, 3, name="conv")(inputs)
    >>> x = layers.Dropout(0.2, name="drop")(x)
    >>> model = keras.Model(inputs, layers.BatchNormalization(name="bn")(x))
    >>> [(f.rule, f.layers, f.fixed_by) for f in lint(model)]  # doctest: +NORMALIZE_WHITESPACE
    [('no-weight-regularization', ('conv',), 'l2'),
     ('dropout-on-feature-maps', ('drop',), 'spatial_dropout'),
     ('bn-after-dropout', ('drop', 'bn'), 'reorder')]
    >>> [(f.rule, f.fixed_by) for f in lint(model, profile="inference")]
    [('training-only-layer', 'strip_inference')]
"""
from __future__ import annotations

import dataclasses

import keras
from keras import layers

from keras_rewrite.graph import kinds
from keras_rewrite import _keras
from keras_rewrite.rebuild import compile
from keras_rewrite.errors import RewriteError
from keras_rewrite.graph.schema import iter_graphs, to_graph, topological_order
from keras_rewrite.passes.drop_bias_before_bn import DropBiasBeforeBN
from keras_rewrite.passes.fold_batchnorm import FoldBatchNorm
from keras_rewrite.passes.reorder import MAX_POOL_CLASSES, category_of, find_blocks, is_anchor
from keras_rewrite.passes.strip_inference import TRAINING_ONLY
from keras_rewrite.graph.view import View

__all__ = ["lint", "lint_graph", "fix_plan", "Finding", "LintRule", "LintReport", "RULES",
           "PROFILES", "FIX_ORDER"]

PROFILES = ("training", "inference")

# The order `lint(model, fix=True)` runs fixing passes in, each at most once: removals first
# (nothing is reordered or folded that goes away), then settings, swaps and moves, and the
# bias/BN folds last (a reorder can put BN right after a conv/dense layer).
FIX_ORDER = ("strip_inference", "l2", "spatial_dropout", "reorder", "drop_bias_before_bn",
             "fold_batchnorm")


@dataclasses.dataclass(frozen=True)
class LintRule:
    """One rule: what it is called, why it matters, and what may fix it.

    Attributes:
        id: the rule id ("bias-before-bn").
        explanation: one paragraph, in plain words: the problem and what to do.
        fixes: the pass short names a finding of this rule may name as ``fixed_by`` (each a
            registered pass; empty when no pass fixes it).
        profile: "training" or "inference" (see `PROFILES`).
        needs_optimizer: the rule reads ``model.optimizer`` (`lint_graph` skips it).
    """

    id: str
    explanation: str
    fixes: tuple = ()
    profile: str = "training"
    needs_optimizer: bool = False


_RULE_LIST = (
    LintRule("bn-after-dropout", (
        "BatchNormalization comes right after a dropout layer. Dropout keeps the mean of its "
        "outputs but changes their standard deviation, so in training BatchNormalization "
        "collects moving statistics of the dropped-out values, while at inference, with "
        "dropout off, it normalizes with those statistics anyway: they no longer match (the "
        "\"variance shift\"). It also turns dropout's zeros into some value repeated across "
        "many units that changes from batch to batch, so the units are no longer really "
        "dropped. Never put BatchNormalization right after Dropout or SpatialDropout; put it "
        "before the dropout."), ("reorder",)),
    LintRule("dropout-on-feature-maps", (
        "Plain Dropout on feature maps zeroes single pixels. Neighbouring pixels carry nearly "
        "the same information, so the next layers barely notice, and a MaxPooling after it "
        "just picks the next-largest pixel. SpatialDropout drops whole channels instead: "
        "every pixel of a dropped channel is zero, which pooling cannot undo, so it even "
        "makes no difference whether it comes before or after pooling. Use SpatialDropout1D, "
        "2D or 3D on feature maps."), ("spatial_dropout",)),
    LintRule("dropout-before-pooling", (
        "Plain Dropout before MaxPooling loses much of its effect: it zeroes some pixels, and "
        "MaxPooling then takes the largest value of each window, so when the dropped pixel "
        "was the largest, pooling returns the second largest instead of zero and the "
        "dropout is ignored. Put the dropout after the pooling, or use SpatialDropout, which "
        "zeroes whole channels so that pooling returns zero too."),
        ("reorder", "spatial_dropout")),
    LintRule("activation-before-bn", (
        "The activation comes before BatchNormalization. Normalizing before the activation "
        "is the better order: with ReLU it keeps about half of the units active and the "
        "other half at zero, and guards against a layer stuck at all zeros; with sigmoid or "
        "tanh it keeps values out of the flat, saturated ranges where gradients vanish. Put "
        "BatchNormalization between the conv/dense layer and its activation (a fused "
        "activation=... has to become a separate layer for that)."), ("reorder",)),
    LintRule("no-weight-regularization", (
        "No layer of this model has weight regularization. That is unusual: almost every "
        "model uses L2 weight decay in every layer, possibly with a different coefficient "
        "per layer. Add an L2 kernel regularizer to the conv and dense layers, starting with "
        "a very small coefficient."), ("l2",)),
    LintRule("bn-soon-after-dropout", (
        "BatchNormalization comes soon after a dropout: fewer than two conv/dense layers lie "
        "between them. The standard deviation the dropout changes in training still shows "
        "in the statistics BatchNormalization collects, and at inference it is gone. The "
        "seed answer leaves at least two conv/dense layers without dropout before using "
        "BatchNormalization again: after a block that ended in dropout, build the next block "
        "without BatchNormalization (Conv → Activation → MaxPooling → Dropout), or leave the "
        "dropout out. That is a design change; no pass makes it.")),
    LintRule("l2-with-weight-decay", (
        "The model has L2 regularizers and its optimizer also has weight_decay: the same "
        "weights are regularized twice, and the two strengths add up. Keras's L2(λ) adds "
        "λ·Σw² to the loss, whose gradient is 2λ·w; a Keras 3 optimizer with weight_decay=d "
        "shrinks every weight by η·d·w before each step (η is the learning rate). With plain "
        "SGD (momentum 0) these are one and the same: L2(λ) is weight_decay=2λ, and together "
        "the weights shrink by η·(2λ + d) per step, more than either setting says. With "
        "momentum the L2 gradient also builds up in the velocity while the decay does not. "
        "With Adam (Adam with weight_decay is AdamW in Keras 3) the L2 gradient is divided "
        "by Adam's per-weight scale, so weights with large gradients are hardly regularized "
        "by it, while the decay shrinks all weights alike: the two stack and act "
        "differently, and neither is the regularization that was tuned. Keep one: remove the "
        "L2 regularizers (with SGD, weight_decay=2λ does what L2(λ) did), or set the "
        "optimizer's weight_decay=None. No pass removes regularizers, and the optimizer is "
        "not part of the graph."), needs_optimizer=True),
    LintRule("weight-decay-on-bias-or-norm", (
        "The optimizer's weight_decay also shrinks biases and the γ (scale) and β (offset) "
        "of normalization layers: a Keras 3 optimizer decays every trainable variable unless "
        "optimizer.exclude_from_weight_decay excluded it. Weight decay is meant to keep the "
        "many kernel weights small; a bias or β only shifts a channel and γ only scales it, "
        "they are few and barely cause overfitting, and pulling them toward zero only pulls "
        "each channel's output toward zero (γ → 0 silences a normalized channel). The usual "
        "practice is to exclude them: call "
        "optimizer.exclude_from_weight_decay(var_names=[\"bias\", \"gamma\", \"beta\"]) before "
        "training. Keras does not save that setting with the model: do it again after "
        "loading."), needs_optimizer=True),
    LintRule("regularizer-on-bias-or-norm", (
        "A bias, or the γ (scale) or β (offset) of a normalization layer, has a regularizer. "
        "Regularization is meant for the many kernel weights; a bias or β only shifts a "
        "channel and γ only scales it, they are few and barely cause overfitting, and "
        "penalizing them only pulls each channel's output toward zero (an L2 on γ can "
        "silence a normalized channel). Remove bias_regularizer, gamma_regularizer and "
        "beta_regularizer; keep the kernel regularizers.")),
    LintRule("regularizer-without-effect", (
        "A regularizer was set on this layer after it was built (layer.kernel_regularizer = "
        "...): the layer's config shows it, but Keras computes regularization losses from "
        "the variable's own regularizer, which was fixed when the variable was created, so "
        "model.losses does not include it and training ignores it. Saving and loading, or "
        "any rebuild, creates the variable anew with it: the same model then trains "
        "differently after a reload. Rebuild the model (lint(model, fix=True) or "
        "keras_rewrite.rewrite(model) do), or set the variable's too (layer.kernel.regularizer "
        "= ...); the l2 pass sets both on a live model.")),
    LintRule("regularizer-not-saved", (
        "A variable has a regularizer (variable.regularizer = ...) that its layer's config "
        "does not hold. model.losses includes it, so training sees it now; but a .keras file "
        "saves the layer's config, not the variable's attribute, and every rebuild creates "
        "the variable from the config: after saving and loading, cloning or a rewrite the "
        "penalty is gone, and the same model trains differently. Set the layer's attribute "
        "too (layer.kernel_regularizer = ...), before saving; the l2 pass sets both on a "
        "live model (RewriteCallback, L2Regularization.apply_in_place).")),
    LintRule("bias-before-bn", (
        "A conv/dense layer with a bias feeds BatchNormalization directly: the bias is "
        "wasted. In training, BatchNormalization subtracts the batch mean of each channel, "
        "which contains the bias, so the bias cancels out: it changes no output and its "
        "gradient is zero, it never learns. At inference it only shifts what the moving mean "
        "subtracts. Set use_bias=False and let BatchNormalization's β be the offset; the "
        "drop_bias_before_bn pass does it and subtracts the trained bias from the moving "
        "mean, so that predictions stay the same (up to float32 rounding)."),
        ("drop_bias_before_bn",)),
    LintRule("foldable-batchnorm", (
        "For inference, this BatchNormalization is a fixed per-channel scale and shift right "
        "after a linear conv/dense layer, and can be folded into that layer's kernel and "
        "bias: one layer less to run, the same predictions up to float32 rounding. Fold it "
        "into the exported model (keep the unfolded model for further training: a folded "
        "model has no batch statistics any more)."), ("fold_batchnorm",), "inference"),
    LintRule("training-only-layer", (
        "This layer only acts while training: dropout and noise layers return their input "
        "unchanged at inference, and ActivityRegularization only adds a training loss. In a "
        "model for inference it is dead weight in the graph (and an export tool may not know "
        "it). Strip it from the exported model; predictions stay bit-identical."),
        ("strip_inference",), "inference"),
)
RULES: dict[str, LintRule] = {rule.id: rule for rule in _RULE_LIST}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem `lint` found.

    Attributes:
        rule: the rule id (a key of `RULES`).
        layers: names of the layers involved, upstream first.
        explanation: one paragraph, in plain words, of why it is a problem and what to do
            (``RULES[rule].explanation``).
        fixed_by: the short name of the registered pass that fixes it, or None when no pass
            does (a change of design or of the optimizer).
        detail: what this model has that the rule is about (the optimizer and coefficients,
            the variables), or "".
    """

    rule: str
    layers: tuple
    explanation: str
    fixed_by: str | None
    detail: str = ""

    def __str__(self) -> str:
        fix = f"fixed by the '{self.fixed_by}' pass" if self.fixed_by else "no pass fixes it"
        detail = f" {self.detail}." if self.detail else ""
        return f"[{self.rule}] {', '.join(self.layers)} ({fix}):{detail} {self.explanation}"


@dataclasses.dataclass
class LintReport:
    """What ``lint(model, fix=True)`` did.

    Attributes:
        profile: the profile linted with.
        before: the findings of the model given.
        passes: the fixing passes run, in order (short names, each once; see `FIX_ORDER`).
        rewrite: `keras_rewrite.rewrite_with_report`'s `Report` (per pass, per layer).
        after: the findings of the fixed model: those no pass fixes (and any a fix made).
    """

    profile: str
    before: list
    passes: list
    rewrite: object
    after: list

    @property
    def fixed(self) -> list[Finding]:
        """The findings of `before` that are gone: no finding of the same rule after the fix
        names any of their layers."""
        left = {(f.rule, name) for f in self.after for name in f.layers}
        return [f for f in self.before
                if not any((f.rule, name) in left for name in f.layers)]

    @property
    def remaining(self) -> list[Finding]:
        return list(self.after)

    def summary(self) -> str:
        passes = ", ".join(self.passes) or "none"
        return (f"{len(self.before)} findings, {len(self.fixed)} fixed by the passes {passes}; "
                f"{len(self.after)} remain")


def lint(model, *, profile: str = "training", fix: bool = False, ignore=()):
    """Findings for a built Functional or Sequential model, nested models included.

    Args:
        model: the model; it is only read.
        profile: "training" (default) or "inference": which rules (see the module docstring).
        fix: False (default): return the findings. True: apply the passes that fix them
            (`fix_plan`: in `FIX_ORDER`, each once) to a copy and return
            ``(fixed_model, LintReport)``; findings no pass fixes are left and reported.
        ignore: rule ids (keys of `RULES`) to leave out, as ruff's ``--ignore``: their
            findings are not reported and their fixes not applied.

    Returns:
        A list of `Finding`, or with ``fix=True`` a ``(keras.Model, LintReport)`` pair.

    Example:
        >>> fixed, report = lint(model, fix=True)  # doctest: +SKIP
        >>> [f.rule for f in report.after]  # what needs a design change  # doctest: +SKIP
    """
    _check_profile(profile)
    if not isinstance(fix, bool):
        raise RewriteError(f"Expected fix=True or fix=False. Received: fix={fix!r}")
    optimizer = _optimizer_of(model)
    findings = lint_graph(to_graph(model), profile=profile, optimizer=optimizer, ignore=ignore)
    if not fix:
        return findings
    from keras_rewrite.rebuild.pipeline import rewrite_with_report

    plan = fix_plan(model, profile=profile, ignore=ignore)
    result = rewrite_with_report(model, plan)
    after = lint(result.model, profile=profile, ignore=ignore)
    return result.model, LintReport(profile, findings, plan, result.report, after)


def fix_plan(model, *, profile: str = "training", ignore=()) -> list[str]:
    """The fixing passes ``lint(model, fix=True)`` runs, in `FIX_ORDER`: each pass runs when,
    on the graph as the passes before it left it, a finding names it.

    Deciding on the edited graph catches what an earlier fix brings out (a reorder that puts
    BatchNormalization right after a conv layer makes its bias wasted). Only the graph is
    edited; nothing is rebuilt.
    """
    _check_profile(profile)
    from keras_rewrite.passes import resolve_passes
    from keras_rewrite.passes.base import run_passes

    optimizer = _optimizer_of(model)
    graph = to_graph(model)
    plan = []
    for name in FIX_ORDER:
        if any(f.fixed_by == name
               for f in lint_graph(graph, profile=profile, optimizer=optimizer,
                                   ignore=ignore)):
            run_passes(graph, resolve_passes([name]))
            plan.append(name)
    return plan


def lint_graph(graph, *, profile: str = "training", optimizer=None,
               ignore=()) -> list[Finding]:
    """Findings for a graph made by `to_graph` (possibly after passes).

    The rules that read the optimizer run only when `optimizer` is given (`lint` passes
    ``model.optimizer``); the rules in `ignore` are left out.
    """
    _check_profile(profile)
    ignored = _check_ignore(ignore)
    if ignored:
        return [f for f in lint_graph(graph, profile=profile, optimizer=optimizer)
                if f.rule not in ignored]
    findings = []
    if profile == "training":
        findings.extend(_model_rules(graph, optimizer))
        blocks = [b for b in find_blocks(graph) if b.needs_change and not b.skip_reason]
    else:
        blocks = []
    matches = _rule_matches(graph, profile)
    for g in iter_graphs(graph):
        linter = _GraphLinter(g, [b for b in blocks if b.graph is g], matches, profile)
        for node_id in topological_order(g):
            findings.extend(linter.check(node_id))
    return findings


def _check_ignore(ignore) -> frozenset:
    """`ignore` as a set of rule ids, or RewriteError naming what is not one."""
    if isinstance(ignore, str):
        ignore = [ignore]
    try:
        ignored = frozenset(ignore)
    except TypeError:
        raise RewriteError(f"Expected ignore to be rule ids (a list of str). Received: "
                           f"ignore={ignore!r}") from None
    unknown = sorted(str(r) for r in ignored - set(RULES))
    if unknown:
        raise RewriteError(f"Expected ignore to name lint rules, some of {sorted(RULES)}. "
                           f"Received unknown rule(s) {unknown}")
    return ignored


def _check_profile(profile) -> None:
    if profile not in PROFILES:
        raise RewriteError(f"Expected profile='training' or profile='inference'. Received: "
                           f"profile={profile!r}")


def _finding(rule, layer_names, fixed_by, detail="") -> Finding:
    if fixed_by is not None and fixed_by not in RULES[rule].fixes:
        raise RewriteError(f"rule {rule!r} names fixed_by={fixed_by!r}; expected one of "
                           f"{RULES[rule].fixes} (a bug in keras_rewrite.analysis.lint.checker)")
    return Finding(rule, tuple(dict.fromkeys(layer_names)), RULES[rule].explanation, fixed_by,
                   detail)


def _optimizer_of(model):
    optimizer = getattr(model, "optimizer", None)
    # A mixed-precision LossScaleOptimizer wraps the one that decays.
    return getattr(optimizer, "inner_optimizer", None) or optimizer


# ------------------------------------------------------------------------- model-level rules

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


def _rule_matches(graph, profile) -> dict:
    """{(id(graph), BatchNormalization node id): matched layer node id} of the pass rules
    that lint asks (accepted matches only: what the pass would rewrite)."""
    rule = DropBiasBeforeBN() if profile == "training" else FoldBatchNorm()
    return {(id(m[1].graph), m[1].id): m[0].id for m in rule.find(View(graph))
            if m.reason is None}


# ------------------------------------------------------------------------- per-node rules


class _GraphLinter:
    def __init__(self, g, blocks, matches, profile):
        self.g = g
        self.blocks = blocks
        self.matches = matches
        self.profile = profile

    # -- graph helpers

    def name(self, node_id) -> str:
        return self.g.nodes[node_id]["spec"].name

    def spec(self, node_id):
        return self.g.nodes[node_id].get("spec")

    def category(self, node_id):
        return category_of(self.spec(node_id)) if self.g.nodes[node_id]["kind"] == "layer" \
            else None

    def producer(self, node_id):
        edges = list(self.g.in_edges(node_id, data=True))
        return (edges[0][0], edges[0][2]["tensor_index"]) if len(edges) == 1 else (None, None)

    def input_rank(self, node_id):
        producer, index = self.producer(node_id)
        if producer is not None:
            shapes = self.g.nodes[producer]["output_shapes"]
            if shapes is not None and index < len(shapes):
                return len(shapes[index])
        own = self.g.nodes[node_id]["output_shapes"]  # dropout keeps its input's shape
        return len(own[0]) if own else None

    def is_plain_dropout(self, node_id) -> bool:
        spec = self.spec(node_id)
        return (self.g.nodes[node_id]["kind"] == "layer" and spec.cls is layers.Dropout
                and spec.config.get("noise_shape") is None)

    def is_nonlinear_activation(self, node_id) -> bool:
        spec = self.spec(node_id)
        return self.category(node_id) == "act" and not (
            spec.cls is layers.Activation and spec.config.get("activation") == "linear")

    def has_fused_activation(self, node_id) -> bool:
        spec = self.spec(node_id)
        return (self.g.nodes[node_id]["kind"] == "layer" and is_anchor(spec)
                and spec.config.get("activation", "linear") not in ("linear", None))

    def reorder_moves_before(self, first, second) -> bool:
        """Would the reorder pass put `first` before `second` (a None `second`: a fused
        activation of the block's anchor)?"""
        return any(b.moves_before(first, second) for b in self.blocks)

    def removable(self, node_id) -> bool:
        """What `keras_rewrite.graph.edit.remove_node` accepts: one input, one output in use."""
        shapes = self.g.nodes[node_id]["output_shapes"]
        used = {d["tensor_index"] for _, _, d in self.g.out_edges(node_id, data=True)}
        return (len(self.g.in_edges(node_id)) == 1 and used <= {0}
                and (shapes is None or len(shapes) == 1))

    # -- rules

    def check(self, node_id):
        if self.g.nodes[node_id]["kind"] != "layer" or self.spec(node_id).subgraph is not None:
            return
        if self.profile == "inference":
            yield from self.inference_rules(node_id)
            return
        if self.category(node_id) == "bn":
            yield from self.bn_rules(node_id)
        if self.is_plain_dropout(node_id):
            yield from self.dropout_rules(node_id)

    def inference_rules(self, node_id):
        layer = self.matches.get((id(self.g), node_id))
        if layer is not None:
            yield _finding("foldable-batchnorm", [self.name(layer), self.name(node_id)],
                           "fold_batchnorm")
        spec = self.spec(node_id)
        if issubclass(spec.cls, TRAINING_ONLY):
            yield _finding("training-only-layer", [spec.name],
                           "strip_inference" if self.removable(node_id) else None,
                           spec.class_name)

    def bn_rules(self, bn):
        layer = self.matches.get((id(self.g), bn))
        if layer is not None:
            yield _finding("bias-before-bn", [self.name(layer), self.name(bn)],
                           "drop_bias_before_bn")
        producer, _ = self.producer(bn)
        if producer is not None and self.category(producer) == "drop":
            fix = "reorder" if self.reorder_moves_before(bn, producer) else None
            yield _finding("bn-after-dropout", [self.name(producer), self.name(bn)], fix)
        activation = self.activation_before(bn)
        if activation is not None:
            if self.has_fused_activation(activation):
                fixed = any(b.anchor == activation and b.moves_before(bn, None)
                            for b in self.blocks)
            else:
                fixed = self.reorder_moves_before(bn, activation)
            yield _finding("activation-before-bn", [self.name(activation), self.name(bn)],
                           "reorder" if fixed else None)
        dropout = self.dropout_soon_before(bn)
        if dropout is not None and dropout != producer:
            yield _finding("bn-soon-after-dropout", [self.name(dropout), self.name(bn)], None)

    def activation_before(self, bn):
        """The activation BN follows, looking back through pooling/dropout/linear layers."""
        current = bn
        while True:
            producer, _ = self.producer(current)
            if producer is None or self.g.nodes[producer]["kind"] != "layer":
                return None
            if self.is_nonlinear_activation(producer) or self.has_fused_activation(producer):
                return producer
            if self.category(producer) not in ("pool", "drop", "act"):  # "act": linear only
                return None
            current = producer

    def dropout_soon_before(self, bn):
        """The nearest dropout upstream with fewer than two conv/dense layers in between."""
        frontier = [(bn, 0)]
        seen = set()
        while frontier:
            node_id, convs = frontier.pop(0)  # breadth first: the nearest dropout wins
            for producer in dict.fromkeys(u for u, _ in self.g.in_edges(node_id)):
                data = self.g.nodes[producer]
                if data["kind"] == "input":
                    continue
                if self.category(producer) == "drop":
                    return producer
                passed = convs + (1 if data["kind"] == "layer" and is_anchor(data["spec"])
                                  else 0)
                if passed < 2 and (producer, passed) not in seen:
                    seen.add((producer, passed))
                    frontier.append((producer, passed))
        return None

    def dropout_rules(self, drop):
        if self.input_rank(drop) in (3, 4, 5):
            yield _finding("dropout-on-feature-maps", [self.name(drop)], "spatial_dropout")
        pool = self.pooling_after(drop)
        if pool is not None:
            fix = "reorder" if self.reorder_moves_before(pool, drop) else "spatial_dropout"
            yield _finding("dropout-before-pooling", [self.name(drop), self.name(pool)], fix)

    def pooling_after(self, drop):
        """The MaxPooling the dropout feeds, looking on through BN/activation/dropout layers."""
        current = drop
        while True:
            users = list(self.g.out_edges(current))
            if len(users) != 1:
                return None
            user = users[0][1]
            if self.g.nodes[user]["kind"] != "layer":
                return None
            if self.spec(user).cls in MAX_POOL_CLASSES:
                return user
            if self.category(user) not in ("bn", "act", "drop"):
                return None
            current = user
