"""Declarative rewrite rules: a pattern, a check that may refuse, a rewrite.

A rule finds every place in a model where its `pattern` matches, asks `check(match)` whether
to rewrite it (a `Refusal` says why not), and replaces the matched calls with what
`rewrite(match)` returns. A `Rule` is a pass: ``keras_rewrite.rewrite(model, [MyRule()])``
reports one `Change` per match ("replaced") and per refusal ("skipped", with the reason), and
``MyRule().dry_run(model)`` lists both without changing anything.

    from keras import layers
    from keras_rewrite.passes.rules import L, Rule

    class ReluToLeaky(Rule):
        pattern = L(layers.ReLU, max_value=None, threshold=0.0, negative_slope=0.0)
        outputs_unchanged = False  # LeakyReLU differs from ReLU on negative inputs

        def rewrite(self, match):
            return layers.LeakyReLU(negative_slope=0.1)

Patterns
    ``L(kind, where=fn, **config)`` matches one layer call: `kind` is a layer class (its
    subclasses match too), a class name, or a tuple of them (None: any layer but a nested
    model); each ``config`` entry must equal the layer's config value (or, if callable, return
    True for it); ``where(node)`` is any further test on the `keras_rewrite.graph.view.Node`.
    ``a | b`` matches either; ``a >> b >> c`` is a chain: each call reads the previous one's
    output (``L(layers.Conv2D) >> layers.BatchNormalization`` works too).
    ``root.of(p1, p2, ...)`` is a small DAG: a call matching `root` whose tensor arguments, in
    order, come from calls matching `p1`, `p2`, ... (each an element, a chain, or another
    ``.of``); ``any_order=True`` for a merge whose argument order does not matter. `X("x")`
    stands for any tensor, bound by name: ``L(layers.Multiply).of(X("x"),
    L(layers.Activation, activation="sigmoid").of(X("x")))`` is ``x * sigmoid(x)`` (the same
    ``x`` twice). A chain used as an argument takes any tensor into its first call.

Matching
    Each graph (nested models' included) is walked once in topological order; a match starts
    at a call matching the chain's first element and follows, at each step, a user of its
    output matching the next element. A DAG pattern is matched the other way, from a call
    matching its root back through its arguments. Cost: O(number of calls x pattern size). A
    DAG match's *inputs* are the tensors entering it from outside (`Match.inputs`). A call belongs
    to at most one accepted match (the first in topological order). A full match is refused,
    with the reason, when a call inside the chain has other users (fan-out, or the tensor is
    also a model output), when a call takes several tensors or gives several outputs, or when
    a layer of a chain of several calls is shared (called elsewhere too). A one-call pattern
    rewrites the *layer*: a shared layer is matched once, at its first call, and its
    replacement stands at every call. A DAG match is refused the same way when a call inside
    it (any but the root) has a user outside it. Then `check` decides. Checks see the graph as
    it was before the rule rewrote anything, so the dry run and the run agree.

Rewrites
    `rewrite(match)` returns the replacement of the matched calls: a Keras layer, a
    `LayerSpec`, or ``(layer_or_spec, {weight label: array})``; or a list of those and matched
    `Node` s to keep (in the new order; an empty list removes the calls). A new Keras layer
    replacing one call takes its name, dtype policy and trainable flag; one named like a
    matched layer of its class takes that layer's weights where they fit. Weights given with
    an item, or written through ``node.weights[...]`` on a kept node, are assigned by the
    rebuild and reported as transformed. Return None, or raise `Refusal`, to leave the match
    as it is (reported as skipped). A DAG match's rewrite returns one layer (or spec, with
    weights), called on the match's inputs (one tensor, or the list of them, as Keras merge
    layers take them) in place of the whole match; or the root node, edited in place.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping, Sequence

import networkx as nx

from keras_rewrite.graph.schema import LayerSpec, configs_equal, to_graph
from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.graph.view import Node, View

__all__ = ["Rule", "L", "X", "Chain", "Tree", "Match", "Refusal", "DryRun", "View", "Node"]


class Refusal(Exception):
    """Why a match is not rewritten: return it from `Rule.check`, or raise it there or in
    `Rule.rewrite`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------------------- patterns


class _Element:
    """What one call of a chain must be. Combine with ``|`` (either) and ``>>`` (chain)."""

    def matches(self, node: Node) -> bool:
        raise NotImplementedError

    def __or__(self, other) -> "_AnyOf":
        return _AnyOf((self, _element(other)))

    def __ror__(self, other) -> "_AnyOf":
        return _AnyOf((_element(other), self))

    def __rshift__(self, other) -> "Chain":
        return Chain((self,)) >> other

    def __rrshift__(self, other) -> "Chain":
        return Chain((_element(other), self))

    def of(self, *arguments, any_order: bool = False) -> "Tree":
        """A call matching this element whose tensor arguments come from `arguments`."""
        return Tree(self, arguments, any_order)


class L(_Element):
    """One layer call: of class `kind`, with these config values, passing `where`.

    Args:
        kind: a layer class (subclasses match too), a class name, or a tuple of them; None
            for any layer except a nested model's call.
        where: a function of the `Node` returning True to match.
        **config: config entries the layer must have: a value (compared deeply) or a
            function of the value returning True.

    Example:
        >>> L(activation="relu")  # any layer with activation="relu"
        L(activation='relu')
    """

    def __init__(self, kind=None, *, where=None, **config):
        kinds = kind if isinstance(kind, tuple) else (() if kind is None else (kind,))
        for k in kinds:
            if not isinstance(k, (type, str)):
                raise TypeError(f"expected a layer class, a class name or a tuple of them; "
                                f"received {k!r} of type {type(k).__name__}")
        if where is not None and not callable(where):
            raise TypeError(f"expected where= to be a function of the node; received {where!r}")
        self.kinds, self.where, self.config = kinds, where, config

    def matches(self, node: Node) -> bool:
        spec = node.spec
        if node.kind != "layer" or spec is None:
            return False
        if self.kinds:
            if not any((spec.class_name == k) if isinstance(k, str) else issubclass(spec.cls, k)
                       for k in self.kinds):
                return False
        elif spec.subgraph is not None:
            return False
        for key, expected in self.config.items():
            if key not in spec.config:
                return False
            value = spec.config[key]
            if callable(expected) and not isinstance(expected, type):
                if not expected(value):
                    return False
            elif not configs_equal(value, expected):
                return False
        return self.where is None or bool(self.where(node))

    def __repr__(self):
        parts = [" | ".join(k if isinstance(k, str) else k.__name__ for k in self.kinds)]
        parts += [f"{k}={v!r}" for k, v in self.config.items()]
        parts += ["where=..."] if self.where is not None else []
        return f"L({', '.join(p for p in parts if p)})"


class _AnyOf(_Element):
    def __init__(self, options):
        self.options = tuple(o for opt in options
                             for o in (opt.options if isinstance(opt, _AnyOf) else (opt,)))

    def matches(self, node: Node) -> bool:
        return any(o.matches(node) for o in self.options)

    def __repr__(self):
        return " | ".join(map(repr, self.options))


class Chain:
    """Calls each reading the previous one's output: ``L(a) >> L(b) >> L(c)``."""

    def __init__(self, elements):
        self.elements = tuple(_element(e) for e in elements)
        if not self.elements:
            raise ValueError("expected a pattern of at least one layer; received an empty chain")

    def __rshift__(self, other) -> "Chain":
        more = other.elements if isinstance(other, Chain) else (_element(other),)
        return Chain(self.elements + more)

    def __len__(self):
        return len(self.elements)

    def __repr__(self):
        return " >> ".join(f"({e!r})" if isinstance(e, _AnyOf) else repr(e)
                           for e in self.elements)


class X:
    """Any tensor, bound by name: the same name must be the same tensor throughout a match.

    It is not part of the match: its producer is left as it is (it is one of the match's
    inputs).
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise TypeError(f"expected X(name) with a non-empty str; received {name!r}")
        self.name = name

    def __repr__(self):
        return f"X({self.name!r})"


class Tree:
    """A call matching `root` whose tensor arguments come from `arguments`, in slot order (or
    in any order with `any_order`): ``L(layers.Add).of(L(layers.Conv2D), X("skip"))``."""

    def __init__(self, root, arguments, any_order: bool = False):
        self.root = _element(root)
        self.arguments = tuple(a if isinstance(a, (X, Tree, Chain)) else _element(a)
                               for a in arguments)
        if not self.arguments:
            raise ValueError(f"expected {root!r}.of(...) with at least one argument pattern")
        self.any_order = bool(any_order)

    def size(self) -> int:
        return 1 + sum(_size(a) for a in self.arguments)

    def __repr__(self):
        order = ", any_order=True" if self.any_order else ""
        return f"{self.root!r}.of({', '.join(map(repr, self.arguments))}{order})"


def _size(pattern) -> int:
    if isinstance(pattern, X):
        return 0
    if isinstance(pattern, Tree):
        return pattern.size()
    return len(pattern) if isinstance(pattern, Chain) else 1


def _match_back(pattern, node: Node, tensor_index: int, bound: dict, nodes: list) -> bool:
    """Match `pattern` against output `tensor_index` of `node`, walking back through its
    arguments; on success extend `nodes` (producers first) and `bound`, else leave both."""
    if isinstance(pattern, X):
        here = (id(node.graph), node.id, tensor_index)
        if bound.setdefault(pattern.name, here) != here:
            return False
        return True
    if isinstance(pattern, Chain):  # its first call takes any tensor
        return _match_back(_chain_tree(pattern.elements), node, tensor_index, bound, nodes)
    root = pattern.root if isinstance(pattern, Tree) else pattern
    if node.kind != "layer" or tensor_index != 0 or node in nodes or not root.matches(node):
        return False
    if not isinstance(pattern, Tree):
        nodes.append(node)
        return True
    inputs = node.inputs
    if len(inputs) != len(pattern.arguments):
        return False
    orders = (itertools.permutations(range(len(inputs))) if pattern.any_order
              else [range(len(inputs))])
    for order in orders:
        trial_bound, trial_nodes = dict(bound), list(nodes)
        if all(_match_back(pattern.arguments[i], *inputs[j], trial_bound, trial_nodes)
               for i, j in enumerate(order)):
            bound.clear(), bound.update(trial_bound)
            nodes[:] = trial_nodes + [node]
            return True
    return False


def _chain_tree(elements):
    """``a >> b >> c`` as a DAG pattern: c.of(b.of(a.of(X)))."""
    tree = Tree(elements[0], (X(f"_chain_input_{id(elements)}"),))
    for element in elements[1:]:
        tree = Tree(element, (tree,))
    return tree


def _element(x) -> _Element:
    if isinstance(x, _Element):
        return x
    if isinstance(x, (type, str, tuple)):
        return L(x)
    raise TypeError(f"expected a pattern element (L(...), a layer class or a class name); "
                    f"received {x!r} of type {type(x).__name__}")


def _chain(pattern) -> Chain | Tree:
    if pattern is None:
        raise TypeError("a Rule needs a `pattern`: L(...), a layer class, a chain "
                        "L(a) >> L(b) or a DAG L(a).of(...); received None")
    return pattern if isinstance(pattern, (Chain, Tree)) else Chain((pattern,))


# -------------------------------------------------------------------------------- matches


class Match(Sequence):
    """The calls a pattern matched, in chain order: ``conv, bn = match``.

    Attributes:
        nodes: the matched `Node` s: in chain order, or for a DAG pattern producers first
            and the root last.
        inputs: for a DAG pattern, the tensors entering the match from outside, as
            ``(producer Node, tensor_index)`` in the order its calls take them.
        reason: why the match is refused, or None when it is rewritten.
        note: None, or a few words `check` or `rewrite` sets to explain the rewrite in the
            report. `check` may also keep what it worked out on the match for `rewrite`
            (``match.plan = ...``).
    """

    def __init__(self, nodes, reason: str | None = None, inputs=None):
        self.nodes = tuple(nodes)
        self.reason = reason
        self.inputs = list(inputs or [])  # a DAG match's (producer Node, tensor_index) from outside
        self.note = None  # a few words `check` or `rewrite` adds to the report's detail
        # As matched: the rewrite may remove or change these calls.
        self._described = [(n.name, n.class_name) for n in self.nodes]

    def __getitem__(self, i):
        return self.nodes[i]

    def __len__(self):
        return len(self.nodes)

    @property
    def view(self) -> View:
        return self.nodes[0].view

    @property
    def graph(self) -> nx.MultiDiGraph:
        return self.nodes[0].graph

    @property
    def names(self) -> list[str]:
        """The matched layers' names (as matched)."""
        return [name for name, _ in self._described]

    @property
    def refused(self) -> bool:
        return self.reason is not None

    def describe(self) -> str:
        """``name (Class) >> ...`` as matched."""
        return " >> ".join(f"{name} ({cls})" for name, cls in self._described)

    def __repr__(self):
        state = f"refused: {self.reason}" if self.reason else "accepted"
        return f"Match({self.describe()}; {state})"


@dataclasses.dataclass
class DryRun:
    """What a rule would do: every full match, accepted or refused with its reason."""

    rule: str
    found: list

    @property
    def matches(self) -> list[Match]:
        return [m for m in self.found if m.reason is None]

    @property
    def refusals(self) -> list[Match]:
        return [m for m in self.found if m.reason is not None]

    def table(self) -> str:
        lines = [f"rule {self.rule}: {len(self.matches)} matches, "
                 f"{len(self.refusals)} refused"]
        for m in self.found:
            lines.append(f"  {'refused' if m.reason else 'match':8} {m.describe()}"
                         + (f": {m.reason}" if m.reason else ""))
        return "\n".join(lines)

    __str__ = table


# ----------------------------------------------------------------------------------- rules


class Rule(Pass):
    """Base class of rules: set `pattern`, define `rewrite`, maybe `check`.

    Attributes:
        pattern: an `L`, a layer class, ``a | b`` or a chain ``a >> b``.
        outputs_unchanged: whether a rewrite keeps inference outputs provably the same
            (True), changes them (False) or may (None); reported per pass.
    """

    pattern = None
    outputs_unchanged: bool | None = None

    def check(self, match: Match):
        """Return None (or True) to rewrite `match`; a `Refusal` (or False) to leave it."""
        return None

    def rewrite(self, match: Match):
        """The replacement of the matched calls (see the module docstring)."""
        raise NotImplementedError(f"rule {self.name} defines no rewrite(match)")

    # ------------------------------------------------------------------------------ finding

    def find(self, view: View) -> list[Match]:
        """Every full match in `view`, in topological order, each accepted or refused."""
        chain = _chain(self.pattern)
        if isinstance(chain, Tree):
            return self._find_trees(view, chain)
        first, rest = chain.elements[0], chain.elements[1:]
        found, claimed, layers_seen = [], set(), set()
        for node in view:
            if node.kind != "layer" or node in claimed or not first.matches(node):
                continue
            if not rest:  # a one-call pattern rewrites a layer: once, at its first call
                if id(node.spec) in layers_seen:
                    continue
                layers_seen.add(id(node.spec))
            nodes = [node]
            for element in rest:
                nxt = next((user for user, _ in nodes[-1].users
                            if user not in claimed and element.matches(user)), None)
                if nxt is None:
                    break
                nodes.append(nxt)
            if len(nodes) != len(chain):
                continue
            match = Match(nodes)
            match.reason = _structure_refusal(nodes) or self._checked(match)
            found.append(match)
            if match.reason is None:
                claimed.update(nodes)
        return found

    def _find_trees(self, view: View, tree: Tree) -> list[Match]:
        found, claimed = [], set()
        for node in view:
            if node.kind != "layer" or node in claimed or not tree.root.matches(node):
                continue
            nodes: list = []
            if not _match_back(tree, node, 0, {}, nodes) or claimed.intersection(nodes):
                continue
            inside = set(nodes)
            inputs = list(dict.fromkeys((p, i) for n in nodes for p, i in n.inputs
                                        if p not in inside))
            match = Match(nodes, inputs=inputs)
            match.reason = _dag_refusal(nodes) or self._checked(match)
            found.append(match)
            if match.reason is None:
                claimed.update(nodes)
        return found

    def _checked(self, match: Match) -> str | None:
        try:
            verdict = self.check(match)
        except Refusal as refusal:
            return refusal.reason
        if verdict is None or verdict is True:
            return None
        if isinstance(verdict, Refusal):
            return verdict.reason
        if verdict is False:
            return f"{self.name}.check() returned False"
        raise TypeError(f"{self.name}.check() returned {verdict!r}; expected None, True, "
                        "False or a Refusal")

    def dry_run(self, model_or_graph) -> DryRun:
        """The matches and refusals in a model (or graph), with reasons; nothing changes."""
        graph = (model_or_graph if isinstance(model_or_graph, nx.MultiDiGraph)
                 else to_graph(model_or_graph))
        return DryRun(self.name, self.find(View(graph)))

    # ---------------------------------------------------------------------------- the pass

    def run(self, graph) -> PassResult:
        view = View(graph)
        changes = []
        for match in self.find(view):
            first = match.names[0]
            if match.reason is None:
                try:
                    detail = self._apply(match)
                except Refusal as refusal:
                    match.reason = refusal.reason
                else:
                    note = f" ({match.note})" if match.note else ""
                    changes.append(Change(first, "replaced", detail + note))
                    continue
            changes.append(Change(first, "skipped", f"{match.describe()}: {match.reason}"))
        modified = any(c.action == "replaced" for c in changes)
        return PassResult(self.name, modified=modified, changes=changes,
                          outputs_unchanged=self.outputs_unchanged if modified else True)

    def _apply(self, match: Match) -> str:
        before = " >> ".join(cls for _, cls in match._described)
        replacement = self.rewrite(match)
        if replacement is None:
            raise Refusal(f"{self.name}.rewrite() returned None")
        single = not isinstance(replacement, list) or _is_item_tuple(replacement)
        items = [replacement] if single else list(replacement)
        view, node = match.view, match[0]
        if isinstance(_chain(self.pattern), Tree) and len(match) > 1:
            return self._apply_dag(match, items, before)
        if len(match) == 1 and len(items) == 1 and isinstance(_first(items[0]), Node):
            if _first(items[0]) != node:
                raise TypeError(f"{self.name}.rewrite() returned {items[0]!r}; expected the "
                                "matched node, a layer or a LayerSpec")
            if isinstance(items[0], tuple) and items[0][1] is not None:
                node.weights.update(items[0][1])
            return f"{before} (edited in place)"
        if len(match) == 1 and len(items) == 1:
            calls = len(node.calls)
            new, weights = items[0] if isinstance(items[0], tuple) else (items[0], None)
            view.replace(node, new, weights)
            shared = f" (a shared layer: all {calls} calls)" if calls > 1 else ""
            return f"{before} -> {node.class_name}{shared}"
        if node.shared and len(match) == 1:
            raise Refusal(f"layer '{node.name}' is shared (called {len(node.calls)} times); "
                          "only a single replacement layer can stand for all its calls")
        chain = view.replace_run(match.nodes, items)
        after = " >> ".join(n.class_name for n in chain) or "(removed)"
        prefix = f"{' >> '.join(match.names)}: " if len(match) > 1 else ""
        return f"{prefix}{before} -> {after}"


    def _apply_dag(self, match: Match, items: list, before: str) -> str:
        root = match[-1]
        if len(items) != 1:
            raise TypeError(f"{self.name}.rewrite() returned {len(items)} items for a DAG "
                            "match; expected one layer (or spec, with weights) or the root node")
        new, weights = items[0] if _is_item_tuple(items[0]) else (items[0], None)
        if isinstance(new, Node):
            if new != root:
                raise TypeError(f"{self.name}.rewrite() returned {new!r}; expected the root "
                                f"node {root!r}, a layer or a LayerSpec")
            if weights is not None:
                root.weights.update(weights)
            return f"{before} (edited in place)"
        replacement = match.view.replace_calls(match.nodes, new, match.inputs, weights)
        return f"{', '.join(match.names)}: {before} -> {replacement.class_name}"


def _dag_refusal(nodes: list[Node]) -> str | None:
    """Why a DAG match cannot be replaced as a whole, or None."""
    inside = set(nodes)
    for node in nodes[:-1]:
        why = _inner_refusal(node, [user for user, _ in node.users if user not in inside],
                             "match")
        if why:
            return why
    return None


def _inner_refusal(node: Node, outside_users: list, what: str) -> str | None:
    """Why `node`, inside a match of several calls, keeps the match from being replaced: its
    layer is called elsewhere, or its output is used outside (`outside_users`)."""
    if node.shared:
        return (f"layer '{node.name}' is shared (called {len(node.calls)} times): "
                f"rewriting the {what} would change its other calls too")
    outputs = sorted(u.id for u in outside_users if u.kind == "output")
    if outputs:
        return (f"the output of '{node.id}' inside the match is also a model output "
                f"({', '.join(outputs)})")
    if outside_users:
        return (f"fan-out: the output of '{node.id}' inside the match also goes to "
                f"{sorted({u.id for u in outside_users})}")
    return None


def _is_item_tuple(x) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and (x[1] is None or isinstance(x[1], Mapping))


def _first(item):
    return item[0] if _is_item_tuple(item) else item


def _structure_refusal(nodes: list[Node]) -> str | None:
    """Why a full match of a chain cannot be rewritten as a run, or None."""
    if len(nodes) == 1:
        return None
    for i, node in enumerate(nodes):
        last = i == len(nodes) - 1
        why = _inner_refusal(node, [] if last else [user for user, _ in node.users
                                                    if user != nodes[i + 1]], "chain")
        if why:
            return why
        inputs = node.inputs
        if len(inputs) != 1:
            return (f"'{node.id}' ({node.class_name}) takes {len(inputs)} tensor inputs; "
                    "a chain goes through single-input calls")
        shapes = node.output_shapes
        if shapes is not None and len(shapes) != 1:
            return (f"'{node.id}' ({node.class_name}) gives {len(shapes)} outputs; a chain "
                    "goes through single-output calls")
    return None
