"""Proof that two models are the same: layer by layer at every depth (`same_model`), by their
predictions (`predictions`), and inside every rewrite, layer by layer against its original
(`fidelity`)."""
from keras_rewrite.verify.predictions import (max_abs_difference, predict, random_batch,
                                              sample_batch)
from keras_rewrite.verify.walk import walk_layers
from keras_rewrite.verify.same_model import (Comparison, Difference, LayerSummary,
                                             ModelMismatchError, ModelSummary, check_same_model,
                                             compare_models, format_regularizer, summarize)

__all__ = ["Difference", "Comparison", "ModelMismatchError", "LayerSummary", "ModelSummary",
           "summarize", "walk_layers", "compare_models", "check_same_model", "predict",
           "max_abs_difference", "format_regularizer", "random_batch", "sample_batch"]
