"""Lint: rules that find what a model should not have, each with the pass that fixes it
(`rules` declares them; `model_rules` and `node_rules` check them; `checker` runs them)."""
from keras_rewrite.analysis.lint.checker import LintReport, fix_plan, lint, lint_graph
from keras_rewrite.analysis.lint.rules import FIX_ORDER, PROFILES, RULES, Finding, LintRule

__all__ = ["lint", "lint_graph", "fix_plan", "Finding", "LintRule", "LintReport", "RULES",
           "PROFILES", "FIX_ORDER"]
