"""`lint`: explain, in plain words, layer orders and settings the seed answers advise against.

The rules come from the two seed answers (../shared/seeds/README.md). Each `Finding` names the
layers involved, explains the problem in one paragraph, and says which pass fixes it — or
None when it needs a design change no pass makes:

=========================  =====================================================  ==================
rule                       fires on                                               fixed_by
=========================  =====================================================  ==================
bn-after-dropout           BatchNormalization whose input is a Dropout or         "reorder" (*)
                           SpatialDropout output
dropout-on-feature-maps    plain Dropout (no noise_shape) on a rank 3/4/5 tensor  "spatial_dropout"
dropout-before-pooling     plain Dropout (no noise_shape) followed by             "reorder" (*),
                           MaxPooling, directly or through BN/activation/dropout  else
                           layers                                                 "spatial_dropout"
activation-before-bn       BatchNormalization after an activation (a layer, or a  "reorder" (*)
                           conv/dense layer's fused activation), directly or
                           through pooling/dropout layers
no-weight-regularization   no weight of any layer has a regularizer, though some  "l2"
                           layers could have one
bn-soon-after-dropout      BatchNormalization with fewer than two conv/dense      None
                           layers between it and a dropout upstream (and not
                           right after it: that is bn-after-dropout)
=========================  =====================================================  ==================

(*) only when `ReorderBlocks` with its default order would actually reorder those layers (they
are in one of its blocks and the move is safe, see `keras_rewrite.passes.reorder.find_blocks`);
otherwise None (or "spatial_dropout" for dropout-before-pooling: whole-channel dropout makes
the order irrelevant).

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
"""
from __future__ import annotations

import dataclasses

from keras import layers

from .graph import iter_graphs, to_graph, topological_order
from .passes.reorder import MAX_POOL_CLASSES, category_of, find_blocks, is_anchor

__all__ = ["lint", "lint_graph", "Finding", "RULES"]

RULES = {
    "bn-after-dropout": (
        "BatchNormalization comes right after a dropout layer. Dropout keeps the mean of its "
        "outputs but changes their standard deviation, so in training BatchNormalization "
        "collects moving statistics of the dropped-out values, while at inference, with "
        "dropout off, it normalizes with those statistics anyway: they no longer match (the "
        "\"variance shift\"). It also turns dropout's zeros into some value repeated across "
        "many units that changes from batch to batch, so the units are no longer really "
        "dropped. Never put BatchNormalization right after Dropout or SpatialDropout; put it "
        "before the dropout."),
    "dropout-on-feature-maps": (
        "Plain Dropout on feature maps zeroes single pixels. Neighbouring pixels carry nearly "
        "the same information, so the next layers barely notice, and a MaxPooling after it "
        "just picks the next-largest pixel. SpatialDropout drops whole channels instead: "
        "every pixel of a dropped channel is zero, which pooling cannot undo, so it even "
        "makes no difference whether it comes before or after pooling. Use SpatialDropout1D, "
        "2D or 3D on feature maps."),
    "dropout-before-pooling": (
        "Plain Dropout before MaxPooling loses much of its effect: it zeroes some pixels, and "
        "MaxPooling then takes the largest value of each window, so when the dropped pixel "
        "was the largest, pooling returns the second largest instead of zero and the "
        "dropout is ignored. Put the dropout after the pooling, or use SpatialDropout, which "
        "zeroes whole channels so that pooling returns zero too."),
    "activation-before-bn": (
        "The activation comes before BatchNormalization. Normalizing before the activation "
        "is the better order: with ReLU it keeps about half of the units active and the "
        "other half at zero, and guards against a layer stuck at all zeros; with sigmoid or "
        "tanh it keeps values out of the flat, saturated ranges where gradients vanish. Put "
        "BatchNormalization between the conv/dense layer and its activation (a fused "
        "activation=... has to become a separate layer for that)."),
    "no-weight-regularization": (
        "No layer of this model has weight regularization. That is unusual: almost every "
        "model uses L2 weight decay in every layer, possibly with a different coefficient "
        "per layer. Add an L2 kernel regularizer to the conv and dense layers, starting with "
        "a very small coefficient."),
    "bn-soon-after-dropout": (
        "BatchNormalization comes soon after a dropout: fewer than two conv/dense layers lie "
        "between them. The standard deviation the dropout changes in training still shows "
        "in the statistics BatchNormalization collects, and at inference it is gone. The "
        "seed answer leaves at least two conv/dense layers without dropout before using "
        "BatchNormalization again: after a block that ended in dropout, build the next block "
        "without BatchNormalization (Conv → Activation → MaxPooling → Dropout), or leave the "
        "dropout out. That is a design change; no pass makes it."),
}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem `lint` found.

    Attributes:
        rule: the rule id (a key of `RULES`).
        layers: names of the layers involved, upstream first.
        explanation: one paragraph, in plain words, of why it is a problem and what to do.
        fixed_by: the short name of the pass that fixes it ("reorder", "spatial_dropout",
            "l2"), or None when it needs a change of design.
    """

    rule: str
    layers: tuple
    explanation: str
    fixed_by: str | None

    def __str__(self) -> str:
        fix = f"fixed by the '{self.fixed_by}' pass" if self.fixed_by else "needs a design change"
        return f"[{self.rule}] {', '.join(self.layers)} ({fix}): {self.explanation}"


def lint(model) -> list[Finding]:
    """Findings for a built Functional or Sequential model, nested models included.

    The model is only read. See the module docstring for the rules.
    """
    return lint_graph(to_graph(model))


def lint_graph(graph) -> list[Finding]:
    """Findings for a graph made by `to_graph` (possibly after passes)."""
    findings = _regularization(graph)
    blocks = [b for b in find_blocks(graph) if b.needs_change and not b.skip_reason]
    for g in iter_graphs(graph):
        linter = _GraphLinter(g, [b for b in blocks if b.graph is g])
        for node_id in topological_order(g):
            findings.extend(linter.check(node_id))
    return findings


def _finding(rule, layer_names, fixed_by) -> Finding:
    return Finding(rule, tuple(layer_names), RULES[rule], fixed_by)


# ------------------------------------------------------------------------- model-level rule

# Config keys of regularizers on weights (activity_regularizer penalizes outputs, not weights).
_KERNEL_KEYS = ("kernel_regularizer", "depthwise_regularizer", "pointwise_regularizer",
                "embeddings_regularizer", "recurrent_regularizer")


def _regularization(graph) -> list[Finding]:
    candidates = []
    for g in iter_graphs(graph):
        for node_id in topological_order(g):
            spec = g.nodes[node_id]["spec"]
            if spec is None or spec.subgraph is not None or g.nodes[node_id]["kind"] != "layer":
                continue
            config = spec.config
            if any(config.get(k) is not None for k in config
                   if k.endswith("_regularizer") and k != "activity_regularizer"):
                return []
            # Set in place on the variables (see KERAS_FACTS: it works, but not in the config).
            source_weights = getattr(spec.source, "trainable_weights", None) or []
            if any(getattr(w, "regularizer", None) is not None for w in source_weights):
                return []
            if any(k in config for k in _KERNEL_KEYS) and spec.name not in candidates:
                candidates.append(spec.name)
    return [_finding("no-weight-regularization", candidates, "l2")] if candidates else []


# ------------------------------------------------------------------------- per-node rules


class _GraphLinter:
    def __init__(self, g, blocks):
        self.g = g
        self.blocks = blocks

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

    # -- rules

    def check(self, node_id):
        if self.g.nodes[node_id]["kind"] != "layer":
            return
        if self.category(node_id) == "bn":
            yield from self.bn_rules(node_id)
        if self.is_plain_dropout(node_id):
            yield from self.dropout_rules(node_id)

    def bn_rules(self, bn):
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
