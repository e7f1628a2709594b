"""`StripInference`: remove the layers that only act while training, before export.

The math it relies on: in inference mode (``training=False``, what `predict` and an exported
model use) Dropout, SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout and AlphaDropout
return their input unchanged, and ActivityRegularization only adds a training loss. Removing
them leaves inference outputs bit-identical; each consumer reads the removed layer's input.

A layer is removed at every call (a shared one too), inside nested models as well. One that
takes several tensors or feeds on a second output is left alone, with the reason.
"""
from __future__ import annotations


from keras_rewrite.graph import kinds
from keras_rewrite.errors import GraphError
from keras_rewrite.graph.view import View
from keras_rewrite.passes.base import Change, Pass, PassResult

__all__ = ["StripInference", "TRAINING_ONLY"]

TRAINING_ONLY = kinds.TRAINING_ONLY


class StripInference(Pass):
    """Remove Dropout, SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout, AlphaDropout
    and ActivityRegularization; inference outputs stay bit-identical.

    Example:
        >>> import keras_rewrite
        >>> deployable = keras_rewrite.rewrite(model, ["strip_inference"])  # doctest: +SKIP
    """

    short_name = "strip_inference"
    summary = "removes the layers that act only while training (Dropout family, noise, ActivityRegularization)"
    outputs_unchanged = True  # declared; each run reports its own verdict

    def get_config(self) -> dict:
        return {}

    def run(self, graph) -> PassResult:
        result = PassResult(self.name, modified=False, outputs_unchanged=True)
        view = View(graph)
        for node in list(view.layers()):
            if not issubclass(node.layer_class, TRAINING_ONLY):
                continue
            name = node.class_name
            try:
                view.remove(node)
            except GraphError as exc:
                result.changes.append(Change(node.id, "skipped", f"{name} kept: {exc}"))
                continue
            result.changes.append(Change(node.id, "removed", f"{name} (training only)"))
            result.modified = True
        return result
