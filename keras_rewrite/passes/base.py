"""What a pass is, and the pass manager that runs passes with a check after each.

A pass is any callable that takes the graph, edits it in place, and returns a `PassResult`
saying whether it modified anything and what, per layer. Subclass `Pass` for a configurable
pass; a plain function works too. A pass edits the graph only: it never builds a model.

    >>> from keras_rewrite.passes import Pass, PassResult, Change
    >>> class ReluToLeaky(Pass):
    ...     def run(self, graph):
    ...         ...  # edit graph.nodes[n]["spec"] and record a Change per layer
    ...         return PassResult(self.name, modified=False)
"""
from __future__ import annotations

from keras_rewrite.errors import GraphError, PassError
from keras_rewrite.graph.schema import validate
from keras_rewrite.report import Change, PassResult

__all__ = ["Pass", "PassResult", "Change", "run_passes"]


class Pass:
    """Base class of configurable passes.

    Attributes:
        name: shown in reports and errors (the class name by default).
        structural: True when the pass adds, removes or moves nodes, so its effect needs a
            rebuilt model; False when it only edits layer settings that can also be applied
            to a live model in place (see `apply_in_place`).
    """

    structural = True

    @property
    def name(self) -> str:
        return type(self).__name__

    def run(self, graph) -> PassResult:
        raise NotImplementedError

    def get_config(self) -> dict | None:
        """The arguments that re-create this pass (``type(self)(**config)``), or None.

        A built-in pass's config is saved in a file of a rewritten KerasHub model (see
        `keras_rewrite.rebuild.rewritten_model`), so that loading it can apply the pass again.
        """
        return None

    def __call__(self, graph) -> PassResult:
        return self.run(graph)

    def __repr__(self):
        return f"{self.name}()"


def pass_name(p) -> str:
    return getattr(p, "name", None) or getattr(p, "__name__", None) or type(p).__name__


def run_passes(graph, passes) -> list[PassResult]:
    """Run `passes` in order on `graph`, validating the graph after each one.

    Raises:
        PassError: a pass raised, returned something other than a PassResult, or left the
            graph invalid; the message names the pass and the passes that ran before it.
    """
    results = []
    for p in passes:
        name = pass_name(p)
        before = [r.pass_name for r in results]
        after = f" (after {', '.join(before)})" if before else ""
        try:
            result = p(graph)
        except PassError:
            raise
        except Exception as exc:
            raise PassError(f"pass '{name}'{after} failed: {type(exc).__name__}: {exc}") from exc
        if result is None:
            result = PassResult(name, modified=True, outputs_unchanged=None)
        if not isinstance(result, PassResult):
            raise PassError(f"pass '{name}' returned {type(result).__name__}; expected a "
                            "PassResult (or None)")
        try:
            validate(graph)
        except GraphError as exc:
            raise PassError(f"pass '{name}'{after} left the graph invalid: {exc}") from exc
        results.append(result)
    return results
