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



from keras_rewrite.errors import RewriteError
from keras_rewrite.graph.schema import iter_graphs, to_graph, topological_order
from keras_rewrite.passes.reorder import find_blocks
from keras_rewrite.analysis.lint.model_rules import _model_rules
from keras_rewrite.analysis.lint.node_rules import _GraphLinter, _rule_matches
from keras_rewrite.analysis.lint.rules import FIX_ORDER, Finding, PROFILES, RULES




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


def _optimizer_of(model):
    optimizer = getattr(model, "optimizer", None)
    # A mixed-precision LossScaleOptimizer wraps the one that decays.
    return getattr(optimizer, "inner_optimizer", None) or optimizer
