"""Lint: rules that find what a model should not have, each with the pass that fixes it."""
from keras_rewrite.analysis.lint.checker import (FIX_ORDER, PROFILES, RULES, Finding, LintReport,
                                                 LintRule, fix_plan, lint, lint_graph)

__all__ = ["lint", "lint_graph", "fix_plan", "Finding", "LintRule", "LintReport", "RULES",
           "PROFILES", "FIX_ORDER"]
