"""The lint rules, declared once (id, profile, what, why, the pass that fixes it), and a finding."""
from __future__ import annotations

import dataclasses


from keras_rewrite.errors import RewriteError




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


def _finding(rule, layer_names, fixed_by, detail="") -> Finding:
    if fixed_by is not None and fixed_by not in RULES[rule].fixes:
        raise RewriteError(f"rule {rule!r} names fixed_by={fixed_by!r}; expected one of "
                           f"{RULES[rule].fixes} (a bug in keras_rewrite.analysis.lint)")
    return Finding(rule, tuple(dict.fromkeys(layer_names)), RULES[rule].explanation, fixed_by,
                   detail)
