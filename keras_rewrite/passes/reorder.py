"""`ReorderBlocks` ("reorder"): put the layers after each conv/dense layer in a set order.

The order comes from the seed answer (../shared/seeds/README.md, 001): Conv → BatchNorm →
Activation → MaxPooling → Dropout. BatchNorm right after Dropout sees a variance in training
that it never sees at inference; plain Dropout before MaxPooling is partly undone by the
pooling; BatchNorm before a ReLU keeps about half the units active.

What the pass matches
=====================
A *block* is a conv or dense layer (the *anchor*: Conv1D/2D/3D, Conv1D/2D/3DTranspose,
DepthwiseConv1D/2D, SeparableConv1D/2D, Dense) followed by a *run*: a chain of layers of the
categories named in `order`, each taking one tensor, where every tensor inside the run has
exactly one consumer and is not a model output (the run's last tensor may have many):

    "bn"    BatchNormalization
    "act"   Activation, ReLU, LeakyReLU, ELU, PReLU, Softmax
    "pool"  MaxPooling1D/2D/3D, AveragePooling1D/2D/3D (not global pooling)
    "drop"  Dropout, SpatialDropout1D/2D/3D

Classes are matched exactly, not by subclass: a subclass may compute something else, and the
proofs below are about these layers. A layer of a category missing from `order` ends a run.
The run is sorted by category into `order`, stably (two activations keep their order), and
rewired with `keras_rewrite.graph.view.View.replace_run`; every moved node keeps its `LayerSpec`, so
its weights (BatchNormalization's moving mean and variance too) travel with it. The pass reads
the graph and its weights through the view only (`Node.weights`), never a live layer.

With ``split_fused_activation`` (and "bn" before "act" in `order`), an anchor with a fused
activation (``activation != "linear"``) whose run holds a BatchNormalization is split first:
the anchor becomes linear and a new ``Activation`` layer named ``{anchor}_activation`` (made
unique) is inserted after it, so the sort can put BatchNormalization between them. The split
alone is exact: ``conv(x)`` with activation f is ``f(conv_linear(x))``. It is skipped when the
anchor's output has other consumers or the layer is called more than once, since the new
layer could not come between the conv and the BatchNormalization for every call.

A moved node whose input shape changes (it crossed a pooling layer) gets
``output_shapes = None``, as the graph schema asks; pooling layers keep their relative order,
so their own output shapes do not change.

Are inference outputs unchanged? (`PassResult.outputs_unchanged`)
=================================================================
A permutation of a chain of maps f_1 … f_n leaves the composition unchanged if every pair of
maps whose relative order it inverts commutes: the permutation is a product of adjacent swaps
of exactly those pairs (bubble sort), and swapping adjacent commuting maps changes nothing.
So the pass checks each inverted pair, at inference (training=False), on the actual weights:

- Dropout and SpatialDropout are the identity at inference: they commute with everything.
  (They do change training: that is the point of moving them.) So does ``Activation("linear")``.
- BatchNormalization at inference is a per-channel affine map ``y = s·x + t`` with
  ``s = gamma / sqrt(moving_variance + epsilon)`` (gamma = 1 when ``scale=False``).
  * Average pooling is a per-channel mean over a window: ``mean(s·x + t) = s·mean(x) + t``,
    so they commute always (``padding="same"`` averages over fewer values, still a mean).
  * Max pooling: ``max(s·x_i + t) = s·max(x_i) + t`` when ``s ≥ 0``; when ``s < 0`` the max
    becomes a min. The pass reads gamma and the moving variance (`Node.weights`: the original
    layer's values, or those an earlier pass set) and
    claims "unchanged" only when every channel has ``s ≥ 0`` (``s = 0`` maps a channel to the
    constant t, which commutes too). Rounding is monotonic, so this holds in float32 exactly.
- An element-wise activation f commutes with max pooling when f is non-decreasing:
  ``max f(x_i) = f(max x_i)``. Known non-decreasing: relu, relu6, elu, selu, sigmoid, tanh,
  softplus, softsign, … (see ``_NON_DECREASING``); ReLU(negative_slope ≥ 0, threshold ≥ 0,
  max_value ≥ threshold or None); LeakyReLU(negative_slope ≥ 0); ELU(alpha ≥ 0); PReLU when
  every alpha weight is ≥ 0. Not: swish/silu, gelu, mish (they dip below zero and come back),
  Softmax (it mixes channels), custom functions (unknown). In float32 the two sides agree up
  to the activation's rounding.
- An activation other than linear does not commute with average pooling (f(mean) ≠ mean(f)),
  nor with BatchNormalization (f(s·x + t) ≠ s·f(x) + t in general). Moving BatchNormalization
  across an activation changes the outputs: the model needs fine-tuning.

`outputs_unchanged` is True only when every reordered block passed these checks (or nothing
changed); otherwise False, and each block's Change says which pair broke the proof.

Shapes: moving BatchNormalization across pooling is refused (the block is reported "skipped")
unless its `axis` is the pooling's channel axis; PReLU only when its alpha is shared over all
spatial axes (otherwise its weight's shape depends on the spatial size); Dropout only without
an explicit `noise_shape`.

Example:
    >>> import keras
    >>> from keras import layers
    >>> from keras_rewrite import to_graph
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = layers.Conv2D(4, 3, name="conv")(inputs)
    >>> x = layers.Dropout(0.2, name="drop")(x)
    >>> x = layers.BatchNormalization(name="bn")(x)
    >>> x = layers.ReLU(name="relu")(x)
    >>> g = to_graph(keras.Model(inputs, layers.MaxPooling2D(name="pool")(x)))
    >>> result = ReorderBlocks()(g)
    >>> result.changes[0].detail.split(";")[0]
    'drop, bn, relu, pool -> bn, relu, pool, drop'
    >>> result.outputs_unchanged
    True
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import networkx as nx
import numpy as np
from keras import layers

from keras_rewrite.graph import kinds
from keras_rewrite.errors import PassError
from keras_rewrite.graph.schema import LayerSpec
from keras_rewrite.graph.view import Node, View
from keras_rewrite.passes.base import Change, Pass, PassResult

__all__ = ["ReorderBlocks", "Block", "find_blocks", "CATEGORIES", "DEFAULT_ORDER",
           "ANCHOR_CLASSES", "MAX_POOL_CLASSES", "AVG_POOL_CLASSES", "category_of", "is_anchor"]

CATEGORIES = ("bn", "act", "pool", "drop")
DEFAULT_ORDER = ("bn", "act", "pool", "drop")

ANCHOR_CLASSES = kinds.KERNEL_LAYERS
MAX_POOL_CLASSES = kinds.MAX_POOLING
AVG_POOL_CLASSES = kinds.AVERAGE_POOLING
_CATEGORY_OF_CLASS = {
    layers.BatchNormalization: "bn",
    **{cls: "act" for cls in kinds.ACTIVATION_LAYERS},
    **{cls: "pool" for cls in MAX_POOL_CLASSES + AVG_POOL_CLASSES},
    **{cls: "drop" for cls in kinds.DROPOUTS},
}

# Element-wise activations (by their Keras name) that are non-decreasing on all of R, so they
# commute with max pooling. Deliberately not: swish/silu, gelu, mish, hard_silu/hard_swish
# (they dip below zero), softmax/log_softmax (not element-wise), threshold (its default value
# may lie above the threshold).
_NON_DECREASING = frozenset({
    "linear", "relu", "relu6", "elu", "selu", "celu", "leaky_relu", "sigmoid", "hard_sigmoid",
    "log_sigmoid", "tanh", "hard_tanh", "softplus", "softsign", "exponential", "sparse_plus",
    "squareplus", "soft_shrink", "hard_shrink", "tanh_shrink",
})


def category_of(spec: LayerSpec | None) -> str | None:
    """"bn", "act", "pool" or "drop" for a layer the pass can move, else None."""
    return None if spec is None else _CATEGORY_OF_CLASS.get(spec.cls)


def is_anchor(spec: LayerSpec | None) -> bool:
    return spec is not None and spec.cls in ANCHOR_CLASSES


def check_order(order) -> tuple:
    """`order` as a tuple, or PassError naming the argument, what was expected and received."""
    expected = f"a sequence of distinct keys from {CATEGORIES}"
    if isinstance(order, str) or not isinstance(order, Sequence):
        raise PassError(f"ReorderBlocks: expected order to be {expected}; received "
                        f"order={order!r}")
    order = tuple(order)
    unknown = [k for k in order if k not in CATEGORIES]
    if unknown:
        raise PassError(f"ReorderBlocks: expected order to be {expected}; received "
                        f"order={order!r} with unknown key(s) {unknown}")
    if len(set(order)) != len(order) or not order:
        raise PassError(f"ReorderBlocks: expected order to be {expected} (at least one, each "
                        f"once); received order={order!r}")
    return order


# ------------------------------------------------------------------------------ matching


@dataclasses.dataclass(frozen=True, eq=False)
class _Member:
    """One layer of a run: a call, or (node None) the anchor's fused activation."""

    node: Node | None
    category: str
    cls: type
    config: dict
    label: str

    @property
    def node_id(self):
        return None if self.node is None else self.node.id


@dataclasses.dataclass
class Block:
    """One anchor and its run, as found; what the pass would do with it, and why.

    Attributes:
        graph: the graph (the root or a nested model's) the block is in.
        anchor: the conv/dense node id.
        members: the run's node ids in call order. ``None`` stands for the anchor's fused
            activation, first in the run, when the pass would split it out.
        planned: the same ids in the order the pass gives them.
        outputs_unchanged: whether inference outputs provably stay the same (True when
            nothing moves).
        reasons: for each inverted pair, why it does or does not commute.
        skip_reason: why the pass leaves an out-of-order block alone, or None.
        split_refused: why a fused activation that would be split is not, or None.
    """

    graph: nx.MultiDiGraph = dataclasses.field(repr=False)
    anchor: str
    members: list
    planned: list
    outputs_unchanged: bool = True
    reasons: list = dataclasses.field(default_factory=list)
    skip_reason: str | None = None
    split_refused: str | None = None
    view: View | None = dataclasses.field(default=None, repr=False)

    @property
    def needs_change(self) -> bool:
        return self.planned != self.members

    @property
    def split(self) -> bool:
        return None in self.members

    def label(self, node_id) -> str:
        return f"{self.anchor}'s fused activation" if node_id is None else str(node_id)

    def moves_before(self, a, b) -> bool:
        """True when the pass puts `a` before `b` although `b` now comes first."""
        return (a in self.members and b in self.members
                and self.members.index(b) < self.members.index(a)
                and self.planned.index(a) < self.planned.index(b))


def find_blocks(graph: nx.MultiDiGraph, order=DEFAULT_ORDER,
                split_fused_activation: bool = True, *, view: View | None = None) -> list[Block]:
    """Every block in `graph` and its nested models' graphs, without changing anything.

    Blocks already in order are included (``needs_change`` False). `keras_rewrite.analysis.lint.checker`
    uses this to say which findings the pass fixes. `view`: a `View` of `graph` to reuse.
    """
    order = check_order(order)
    view = View(graph) if view is None else view
    blocks = []
    for anchor in view.layers():
        if not is_anchor(anchor.spec):
            continue
        for first in dict.fromkeys(user for user, _ in anchor.users):
            run = _run_from(first, order)
            if not run:
                continue
            block = _plan(view, anchor, run, order, split_fused_activation)
            if len(block.members) > 1 or block.split_refused:
                blocks.append(block)
    return blocks


def _is_movable(node: Node, order) -> bool:
    if node.kind != "layer" or category_of(node.spec) not in order or len(node.inputs) != 1:
        return False
    shapes = node.output_shapes
    return shapes is None or len(shapes) == 1


def _run_from(first: Node, order) -> list[Node]:
    if not _is_movable(first, order):
        return []
    run = [first]
    while True:
        users = run[-1].users
        # One consumer, which is a movable layer (so not a model output): the run goes on.
        if len(users) != 1 or not _is_movable(users[0][0], order):
            return run
        run.append(users[0][0])


def _member(node: Node) -> _Member:
    return _Member(node, category_of(node.spec), node.layer_class, dict(node.config), node.id)


def _plan(view, anchor: Node, run: list[Node], order, split_fused_activation) -> Block:
    members = [_member(n) for n in run]
    split_refused = None
    fused = anchor.config.get("activation", "linear")
    wants_split = (split_fused_activation and fused not in ("linear", None)
                   and "bn" in order and "act" in order
                   and order.index("bn") < order.index("act")
                   and any(m.category == "bn" for m in members))
    if wants_split:
        users, calls = len(anchor.users), len(anchor.calls)
        if users != 1:
            split_refused = (f"fused activation {fused!r} not split: the output of "
                             f"'{anchor.id}' has {users} consumers")
        elif calls != 1:
            split_refused = (f"fused activation {fused!r} not split: layer "
                             f"'{anchor.name}' is called {calls} times")
        else:
            members.insert(0, _Member(None, "act", layers.Activation, {"activation": fused},
                                      f"{anchor.id}'s fused activation"))
    planned = sorted(members, key=lambda m: order.index(m.category))
    block = Block(anchor.graph, anchor.id, [m.node_id for m in members],
                  [m.node_id for m in planned], split_refused=split_refused, view=view)
    if not block.needs_change:
        return block
    position = {id(m): i for i, m in enumerate(planned)}
    inverted = [(a, b) for i, a in enumerate(members) for b in members[i + 1:]
                if position[id(a)] > position[id(b)]]
    for a, b in inverted:
        problem = _shape_problem(anchor, run, a, b)
        if problem:
            block.skip_reason = problem
            block.outputs_unchanged = True  # nothing will move
            return block
    for a, b in inverted:
        ok, why = _commutes(a, b)
        if why not in block.reasons:  # a Dropout moved past three layers: say it once
            block.reasons.append(why)
        block.outputs_unchanged &= ok
    return block


# ------------------------------------------------------------------------------ shape safety


def _rank(anchor: Node, run: list[Node]):
    for node in [anchor, *run]:
        shapes = node.output_shapes
        if shapes:
            return len(shapes[0])
    return None


def _absolute_axis(axis: int, rank: int | None) -> int:
    return axis + rank if axis < 0 and rank is not None else axis


def _shape_problem(anchor: Node, run: list[Node], a: _Member, b: _Member) -> str | None:
    """Why moving `a` and `b` past each other would break a layer's shapes, or None."""
    if (a.category == "pool") == (b.category == "pool"):
        return None  # only pooling changes shapes
    pool, other = (a, b) if a.category == "pool" else (b, a)
    rank = _rank(anchor, run)
    channels_last = pool.config.get("data_format", "channels_last") == "channels_last"
    if other.cls is layers.BatchNormalization:
        axis = other.config.get("axis", -1)
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if not isinstance(axis, int):
            return f"'{other.label}' normalizes over axes {axis}; expected one channel axis"
        # Compare as negative or positive indices alike when the rank is known; when it is
        # not, only the same spelling (-1 for channels_last, 1 for channels_first) passes.
        channel = _absolute_axis(-1 if channels_last else 1, rank)
        if _absolute_axis(axis, rank) != channel:
            return (f"'{other.label}' normalizes axis {axis} but '{pool.label}' pools with "
                    f"data_format={pool.config.get('data_format')!r}; expected the "
                    "BatchNormalization axis to be the pooling's channel axis")
    elif other.cls is layers.PReLU:
        shared = other.config.get("shared_axes") or []
        shared = [shared] if isinstance(shared, int) else list(shared)
        if rank is None:
            return f"'{other.label}': rank unknown, cannot check PReLU's alpha shape"
        spatial = set(range(2, rank)) if not channels_last else set(range(1, rank - 1))
        if not spatial <= set(shared):
            return (f"'{other.label}' has a per-position alpha (shared_axes={shared or None}); "
                    f"expected shared_axes to cover the spatial axes {sorted(spatial)} so its "
                    f"weight fits after crossing '{pool.label}'")
    elif other.category == "drop" and other.config.get("noise_shape") is not None:
        return (f"'{other.label}' has noise_shape={other.config['noise_shape']}, fixed for "
                f"its input shape; expected noise_shape=None to move it across '{pool.label}'")
    return None


# ------------------------------------------------------------------------------ proofs


def _is_identity_at_inference(m: _Member) -> bool:
    return m.category == "drop" or (m.cls is layers.Activation
                                    and m.config.get("activation") == "linear")


def _commutes(a: _Member, b: _Member) -> tuple[bool, str]:
    """Whether the maps of `a` and `b` commute at inference, and a sentence saying why."""
    for m in (a, b):
        if _is_identity_at_inference(m):
            return True, f"'{m.label}' is the identity at inference"
    by_category = {a.category: a, b.category: b}
    if set(by_category) == {"bn", "pool"}:
        bn, pool = by_category["bn"], by_category["pool"]
        if pool.cls in AVG_POOL_CLASSES:
            return True, (f"'{bn.label}' is a per-channel affine map, which commutes with "
                          f"average pooling '{pool.label}'")
        return _bn_scale_non_negative(bn, pool)
    if set(by_category) == {"act", "pool"}:
        act, pool = by_category["act"], by_category["pool"]
        if pool.cls in AVG_POOL_CLASSES:
            return False, (f"'{act.label}' moved across average pooling '{pool.label}': a "
                           "non-linear activation does not commute with averaging")
        ok, why = _non_decreasing(act)
        if ok:
            return True, f"{why}, so it commutes with max pooling '{pool.label}'"
        return False, f"{why}, so moving it across max pooling '{pool.label}' changes outputs"
    if set(by_category) == {"bn", "act"}:
        bn, act = by_category["bn"], by_category["act"]
        return False, (f"'{bn.label}' moved across activation '{act.label}': outputs change, "
                       "fine-tune the model")
    return False, f"no proof that '{a.label}' and '{b.label}' commute"


def _weight(member: _Member, label: str):
    """`label` of the member's layer as float64, or None when the layer has no such weight
    (a layer made by a pass, with no values yet)."""
    try:
        return np.asarray(member.node.weights[label], dtype=np.float64)
    except KeyError:
        return None


def _bn_scale_non_negative(bn: _Member, pool: _Member) -> tuple[bool, str]:
    variance = _weight(bn, "moving_variance")
    gamma = _weight(bn, "gamma") if bn.config.get("scale", True) else np.ones_like(variance)
    if variance is None or gamma is None:
        return False, (f"'{bn.label}' has no trained weights to check, so BatchNormalization "
                       f"across max pooling '{pool.label}' cannot be proven exact")
    with np.errstate(all="ignore"):
        scale = gamma / np.sqrt(variance + float(bn.config.get("epsilon", 1e-3)))
    bad = int(np.sum(~(np.isfinite(scale) & (scale >= 0))))
    if bad:
        return False, (f"'{bn.label}' has {bad} channel(s) with gamma/sqrt(var+eps) < 0 (or "
                       f"not finite), so it does not commute with max pooling '{pool.label}'")
    return True, (f"'{bn.label}' has gamma/sqrt(var+eps) >= 0 on every channel, so it "
                  f"commutes with max pooling '{pool.label}'")


def _non_decreasing(act: _Member) -> tuple[bool, str]:
    config, label = act.config, act.label
    if act.cls is layers.Activation:
        name = config.get("activation")
        if isinstance(name, str) and name in _NON_DECREASING:
            return True, f"'{label}' ({name}) is element-wise and non-decreasing"
        return False, f"'{label}' ({name!r}) is not known to be element-wise non-decreasing"
    if act.cls is layers.ReLU:
        slope, threshold = config.get("negative_slope", 0.0), config.get("threshold", 0.0)
        max_value = config.get("max_value")
        ok = slope >= 0 and threshold >= 0 and (max_value is None or max_value >= threshold)
        return ok, (f"'{label}' (ReLU negative_slope={slope}, threshold={threshold}, "
                    f"max_value={max_value}) is {'' if ok else 'not '}non-decreasing")
    if act.cls is layers.LeakyReLU:
        ok = config.get("negative_slope", 0.3) >= 0
        return ok, f"'{label}' (LeakyReLU) is {'' if ok else 'not '}non-decreasing"
    if act.cls is layers.ELU:
        ok = config.get("alpha", 1.0) >= 0
        return ok, f"'{label}' (ELU alpha={config.get('alpha')}) is " \
                   f"{'' if ok else 'not '}non-decreasing"
    if act.cls is layers.PReLU:
        alpha = _weight(act, "alpha")
        if alpha is None:
            return False, f"'{label}' (PReLU) has no trained alpha to check"
        ok = bool(np.all(alpha >= 0))
        return ok, (f"'{label}' (PReLU) has {'all' if ok else 'some negative'} alpha weights"
                    f"{' >= 0, so it is non-decreasing' if ok else ''}")
    return False, f"'{label}' ({act.cls.__name__}) is not an element-wise non-decreasing map"


# ------------------------------------------------------------------------------ the pass


class ReorderBlocks(Pass):
    """Sort the BN/activation/pooling/dropout layers after each conv/dense layer into `order`.

    Args:
        order: the category order, a sequence of distinct keys from
            ("bn", "act", "pool", "drop"); layers of categories left out end a run and are
            never moved. Default: the seed answer's Conv → BN → Act → Pool → Dropout.
        split_fused_activation: split ``Conv2D(..., activation="relu")`` followed by
            BatchNormalization into a linear conv and an ``Activation`` layer, so that
            BatchNormalization can go between them.

    See the module docstring for what is matched and when outputs provably stay the same.
    """

    short_name = "reorder"
    summary = "reorders the BatchNorm / activation / pooling / dropout run after each conv/dense layer; splits a fused activation off"
    outputs_unchanged = None  # declared; each run reports its own verdict

    structural = True

    def __init__(self, order=DEFAULT_ORDER, split_fused_activation: bool = True):
        self.order = check_order(order)
        if not isinstance(split_fused_activation, bool):
            raise PassError(f"ReorderBlocks: expected split_fused_activation to be True or "
                            f"False; received split_fused_activation={split_fused_activation!r}")
        self.split_fused_activation = split_fused_activation

    def get_config(self) -> dict:
        return {"order": list(self.order), "split_fused_activation": self.split_fused_activation}

    def __repr__(self):
        return (f"ReorderBlocks(order={self.order!r}, "
                f"split_fused_activation={self.split_fused_activation!r})")

    def run(self, graph) -> PassResult:
        changes = []
        outputs_unchanged = True
        for block in find_blocks(graph, self.order, self.split_fused_activation):
            if block.split_refused:
                changes.append(Change(block.anchor, "skipped", block.split_refused))
            if not block.needs_change:
                continue
            if block.skip_reason:
                changes.append(Change(block.anchor, "skipped", block.skip_reason))
                continue
            before = [block.label(n) for n in block.members]
            after = [block.label(n) for n in block.planned]
            _apply(block)
            verdict = ("outputs unchanged at inference" if block.outputs_unchanged
                       else "outputs change at inference, fine-tune the model")
            changes.append(Change(block.anchor, "reordered",
                                  f"{', '.join(before)} -> {', '.join(after)}; {verdict}: "
                                  f"{'; '.join(block.reasons)}"))
            outputs_unchanged &= block.outputs_unchanged
        modified = any(c.action != "skipped" for c in changes)
        return PassResult(self.name, modified, changes,
                          outputs_unchanged=outputs_unchanged if modified else True)


def _apply(block: Block) -> None:
    view, g = block.view, block.graph
    node = {n: view.node(g, n) for n in block.members if n is not None}
    if block.split:
        node[None] = _split_fused_activation(view, view.node(g, block.anchor))
    members, planned = [node[n] for n in block.members], [node[n] for n in block.planned]
    shapes = {n: n.output_shapes for n in members}
    view.replace_run(members, planned)
    # A non-pooling layer's output shape is that of the last pooling before it in the run;
    # pooling layers keep their relative order, so it changed exactly when the number of
    # pooling layers before it did. Those keep their recorded shape; the others keep what
    # replace_run recorded (unknown, or the run's output shape for the last one).
    pools_before = {}
    for sequence, key in ((members, "old"), (planned, "new")):
        count = 0
        for n in sequence:
            pools_before.setdefault(n, {})[key] = count
            count += category_of(n.spec) == "pool"
    for n, counts in pools_before.items():
        if counts["old"] == counts["new"]:
            n.output_shapes = shapes[n]


def _split_fused_activation(view: View, anchor: Node) -> Node:
    """Make `anchor` linear and insert an Activation layer with its old activation after it."""
    activation = anchor.config["activation"]
    shapes = anchor.output_shapes
    view.set_config(anchor, activation="linear")
    name = view.fresh_name(f"{anchor.name}_activation")
    config = {"name": name, "trainable": anchor.config.get("trainable", True),
              "activation": activation}
    if anchor.config.get("dtype") is not None:
        config["dtype"] = anchor.config["dtype"]  # compute in the conv's dtype policy, as before
    new = view.insert_after(anchor, LayerSpec(name, layers.Activation, config))
    new.output_shapes = shapes
    new.meta["created_by"] = "ReorderBlocks"
    return new
