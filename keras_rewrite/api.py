"""`rewrite` and `rewrite_with_report`: the library's main entry (the pipeline is
`keras_rewrite.rebuild.pipeline`)."""
from keras_rewrite.rebuild.pipeline import RewriteResult, rewrite, rewrite_with_report

__all__ = ["rewrite", "rewrite_with_report", "RewriteResult"]
