"""Rules about each layer call and its neighbours, walking the graph in topological order."""
from __future__ import annotations


from keras import layers

from keras_rewrite.passes.drop_bias_before_bn import DropBiasBeforeBN
from keras_rewrite.passes.fold_batchnorm import FoldBatchNorm
from keras_rewrite.passes.reorder import MAX_POOL_CLASSES, category_of, is_anchor
from keras_rewrite.passes.strip_inference import TRAINING_ONLY
from keras_rewrite.graph.view import View
from keras_rewrite.analysis.lint.rules import _finding




def _rule_matches(graph, profile) -> dict:
    """{(id(graph), BatchNormalization node id): matched layer node id} of the pass rules
    that lint asks (accepted matches only: what the pass would rewrite)."""
    rule = DropBiasBeforeBN() if profile == "training" else FoldBatchNorm()
    return {(id(m[1].graph), m[1].id): m[0].id for m in rule.find(View(graph))
            if m.reason is None}




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
