"""keras_rewrite: rewrite a built Keras 3 model through a networkx graph, keeping its weights.

    >>> import keras_rewrite
    >>> new_model = keras_rewrite.rewrite(model, passes=["l2", "spatial_dropout"])  # doctest: +SKIP
"""
import sys as _sys

if _sys.argv[:1] == ["-m"]:  # `python -m keras_rewrite`: runpy imports this package first, so
    # the current folder (first on sys.path for -m) must go before Keras is imported, or a
    # `keras/` folder there would run in its place.
    from keras_rewrite_cli.entry import safe_sys_path as _safe_sys_path

    _safe_sys_path(_sys.argv[1:])
from . import _quiet  # noqa: F401,E402  (must precede the first TensorFlow import)
from .api import RewriteResult, rewrite, rewrite_with_report
from .conversion import ConversionReport, convert_file  # noqa: F401  (file -> checked file)
from .errors import (GraphError, PassError, RebuildError, RewriteError, ShapeMismatchError,
                     UnsupportedModelError, WeightTransferError)
from .functional import RewrittenFunctional  # registered: files holding it load
from .graph import LayerSpec, Slot, to_graph, validate
# Imported eagerly, not lazily: importing the submodule keras_rewrite.lint binds the package
# attribute `lint` to that module, which would shadow a lazily exported `lint` function.
from .lint import Finding, lint
from .model_diff import ModelDiff, diff_models  # noqa: F401  (what changed, layer by layer)
from .rebuild import to_model
from .report import Change, PassResult, Report
from . import surgery  # noqa: F401  (keras_rewrite.surgery: delete_channels, ...)
from .rules import L, Node, Refusal, Rule, View  # noqa: F401  (write your own pass)

__version__ = "0.1.0"

_LAZY = {"RewriteCallback": ".callback"}


def __getattr__(name):
    # Imported on first use, so `import keras_rewrite` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "rewrite", "rewrite_with_report", "RewriteResult", "to_graph", "to_model", "validate",
    "LayerSpec", "Slot", "Report", "PassResult", "Change", "RewriteError", "UnsupportedModelError",
    "GraphError", "PassError", "RebuildError", "WeightTransferError", "ShapeMismatchError",
    "lint", "Finding", "RewriteCallback", "RewrittenFunctional", "diff_models", "ModelDiff",
]
