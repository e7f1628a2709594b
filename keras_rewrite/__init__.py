"""keras_rewrite: rewrite a built Keras 3 model through a networkx graph, keeping its weights.

    >>> import keras_rewrite
    >>> new_model = keras_rewrite.rewrite(model, passes=["l2", "spatial_dropout"])  # doctest: +SKIP

Importing the package costs nothing: each public name is imported on first use (PEP 562), and
Keras is not imported until then. Once Keras is imported (by anyone), `RewrittenFunctional` is
registered, so files holding one load with ``keras.saving.load_model``.

The layers, each a folder, arrows pointing down: the faces (`api`, `conversion`, `callback`,
`cli`) use `surgery` and `analysis`, which use `rebuild` and `verify`, which use `passes`, which
use `graph`; everything may use `_keras` (the one module touching Keras internals), `errors`
and `report`; `files` (model files) uses `errors` only.
"""
import sys as _sys

if _sys.argv[:1] == ["-m"]:  # `python -m keras_rewrite`: runpy imports this package first, so
    # the current folder (first on sys.path for -m) must go before Keras is imported, or a
    # `keras/` folder there would run in its place.
    from keras_rewrite.cli.entry import safe_sys_path as _safe_sys_path

    _safe_sys_path(_sys.argv[1:])
from keras_rewrite import _quiet  # noqa: F401,E402  (before the first TensorFlow import)
from keras_rewrite._import_hooks import on_import as _on_import  # noqa: E402

__version__ = "0.2.0"

# public name -> the module defining it, imported on first use
_PUBLIC = {
    "rewrite": "api", "rewrite_with_report": "api", "RewriteResult": "api",
    "convert_file": "conversion", "ConversionReport": "conversion",
    "RewriteCallback": "callback",
    "RewriteError": "errors", "UnsupportedModelError": "errors", "GraphError": "errors",
    "PassError": "errors", "RebuildError": "errors", "WeightTransferError": "errors",
    "ShapeMismatchError": "errors", "FidelityError": "errors",
    "Report": "report", "PassResult": "report", "Change": "report",
    "LayerSpec": "graph", "Slot": "graph", "to_graph": "graph", "validate": "graph",
    "View": "graph", "Node": "graph",
    "L": "passes.rules", "Rule": "passes.rules", "Refusal": "passes.rules",
    "to_model": "rebuild", "RewrittenFunctional": "rebuild.rewritten_model",
    "lint": "analysis.lint", "Finding": "analysis.lint",
    "diff_models": "analysis.diff", "ModelDiff": "analysis.diff",
}
# sub-packages reachable as attributes (`keras_rewrite.surgery.delete_channels`)
_SUBPACKAGES = {"surgery", "passes", "graph", "rebuild", "verify", "analysis", "files", "cli",
                "api", "conversion", "callback", "errors", "report"}


def __getattr__(name):
    import importlib

    if name in _PUBLIC:
        value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC) | _SUBPACKAGES)


def _register_saved_classes():
    # Files holding a RewrittenFunctional name it by its registered name, which Keras looks up
    # among registered objects only; `api` registers it and the recipe loader it needs.
    import keras_rewrite.api  # noqa: F401


_on_import("keras", after=_register_saved_classes)

__all__ = sorted(_PUBLIC)
