"""keras_rewrite: rewrite a built Keras 3 model through a networkx graph, keeping its weights.

    >>> import keras_rewrite
    >>> new_model = keras_rewrite.rewrite(model, passes=["l2", "spatial_dropout"])  # doctest: +SKIP
"""
from . import _quiet  # noqa: F401  (must precede the first TensorFlow import)
from .api import RewriteResult, rewrite, rewrite_with_report
from .errors import (GraphError, PassError, RebuildError, RewriteError, ShapeMismatchError,
                     UnsupportedModelError, WeightTransferError)
from .graph import LayerSpec, Slot, to_graph, validate
from .rebuild import to_model
from .report import Change, PassResult, Report

__version__ = "0.1.0"
__all__ = [
    "rewrite", "rewrite_with_report", "RewriteResult", "to_graph", "to_model", "validate",
    "LayerSpec", "Slot", "Report", "PassResult", "Change", "RewriteError", "UnsupportedModelError",
    "GraphError", "PassError", "RebuildError", "WeightTransferError", "ShapeMismatchError",
]
