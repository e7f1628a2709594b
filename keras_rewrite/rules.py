"""Declarative rewrite rules: a pattern, a check that may refuse, a rewrite.

A rule finds every place in a model where its `pattern` matches, asks `check(match)` whether
to rewrite it (a `Refusal` says why not), and replaces the matched calls with what
`rewrite(match)` returns. A `Rule` is a pass: ``keras_rewrite.rewrite(model, [MyRule()])``
reports one `Change` per match ("replaced") and per refusal ("skipped", with the reason), and
``MyRule().dry_run(model)`` lists both without changing anything.

    from keras import layers
    from keras_rewrite.rules import L, Rule

    class ReluToLeaky(Rule):
        pattern = L(layers.ReLU, max_value=None, threshold=0.0, negative_slope=0.0)
        outputs_unchanged = False  # LeakyReLU differs from ReLU on negative inputs

        def rewrite(self, match):
            return layers.LeakyReLU(negative_slope=0.1)

Patterns
    ``L(kind, where=fn, **config)`` matches one layer call: `kind` is a layer class (its
    subclasses match too), a class name, or a tuple of them (None: any layer but a nested
    model); each ``config`` entry must equal the layer's config value (or, if callable, return
    True for it); ``where(node)`` is any further test on the `keras_rewrite.view.Node`.
    ``a | b`` matches either; ``a >> b >> c`` is a chain: each call reads the previous one's
    output (``L(layers.Conv2D) >> layers.BatchNormalization`` works too).

Matching
    Each graph (nested models' included) is walked once in topological order; a match starts
    at a call matching the chain's first element and follows, at each step, a user of its
    output matching the next element. Cost: O(number of calls x chain length). A call belongs
    to at most one accepted match (the first in topological order). A full match is refused,
    with the reason, when a call inside the chain has other users (fan-out, or the tensor is
    also a model output), when a call takes several tensors or gives several outputs, or when
    a layer of a chain of several calls is shared (called elsewhere too). A one-call pattern
    rewrites the *layer*: a shared layer is matched once, at its first call, and its
    replacement stands at every call. Then `check` decides. Checks see the graph as it was
    before the rule rewrote anything, so the dry run and the run agree.

Rewrites
    `rewrite(match)` returns the replacement of the matched calls: a Keras layer, a
    `LayerSpec`, or ``(layer_or_spec, {weight label: array})``; or a list of those and matched
    `Node` s to keep (in the new order; an empty list removes the calls). A new Keras layer
    replacing one call takes its name, dtype policy and trainable flag; one named like a
    matched layer of its class takes that layer's weights where they fit. Weights given with
    an item, or written through ``node.weights[...]`` on a kept node, are assigned by the
    rebuild and reported as transformed. Return None, or raise `Refusal`, to leave the match
    as it is (reported as skipped).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import networkx as nx

from .graph import LayerSpec, configs_equal, to_graph
from .passes.base import Pass
from .report import Change, PassResult
from .view import Node, View

__all__ = ["Rule", "L", "Chain", "Match", "Refusal", "DryRun", "View", "Node"]


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


def _element(x) -> _Element:
    if isinstance(x, _Element):
        return x
    if isinstance(x, (type, str, tuple)):
        return L(x)
    raise TypeError(f"expected a pattern element (L(...), a layer class or a class name); "
                    f"received {x!r} of type {type(x).__name__}")


def _chain(pattern) -> Chain:
    if pattern is None:
        raise TypeError("a Rule needs a `pattern`: L(...), a layer class, or a chain "
                        "L(a) >> L(b); received None")
    return pattern if isinstance(pattern, Chain) else Chain((pattern,))


# -------------------------------------------------------------------------------- matches


class Match(Sequence):
    """The calls a pattern matched, in chain order: ``conv, bn = match``.

    Attributes:
        nodes: the matched `Node` s.
        reason: why the match is refused, or None when it is rewritten.
        note: None, or a few words `check` or `rewrite` sets to explain the rewrite in the
            report. `check` may also keep what it worked out on the match for `rewrite`
            (``match.plan = ...``).
    """

    def __init__(self, nodes, reason: str | None = None):
        self.nodes = tuple(nodes)
        self.reason = reason
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


def _is_item_tuple(x) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and (x[1] is None or isinstance(x[1], Mapping))


def _first(item):
    return item[0] if _is_item_tuple(item) else item


def _structure_refusal(nodes: list[Node]) -> str | None:
    """Why a full match of a chain cannot be rewritten as a run, or None."""
    if len(nodes) == 1:
        return None
    for i, node in enumerate(nodes):
        if node.shared:
            return (f"layer '{node.name}' is shared (called {len(node.calls)} times): "
                    "rewriting the chain would change its other calls too")
        inputs = node.inputs
        if len(inputs) != 1:
            return (f"'{node.id}' ({node.class_name}) takes {len(inputs)} tensor inputs; "
                    "a chain goes through single-input calls")
        shapes = node.output_shapes
        if shapes is not None and len(shapes) != 1:
            return (f"'{node.id}' ({node.class_name}) gives {len(shapes)} outputs; a chain "
                    "goes through single-output calls")
        if i < len(nodes) - 1:
            others = [user for user, _ in node.users if user != nodes[i + 1]]
            outputs = sorted(u.id for u in others if u.kind == "output")
            if outputs:
                return (f"the output of '{node.id}' inside the match is also a model output "
                        f"({', '.join(outputs)})")
            if others:
                return (f"fan-out: the output of '{node.id}' inside the match also goes to "
                        f"{sorted({u.id for u in others})}")
    return None
