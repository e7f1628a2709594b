"""Named errors. Each says what was wrong, what was expected and what was received.

Every error raised on purpose by keras_rewrite derives from `RewriteError`, so callers can catch
one class; the subclasses tell which step failed.
"""


class RewriteError(Exception):
    """Base class of every error keras_rewrite raises on purpose."""


class UnsupportedModelError(RewriteError, TypeError):
    """The model has no graph of layer calls that can be walked (subclassed or unbuilt)."""


class GraphError(RewriteError, ValueError):
    """The graph breaks the schema documented in `keras_rewrite.graph` (raised by `validate`)."""


class PassError(RewriteError, ValueError):
    """A pass was misconfigured or left the graph broken; the message names the pass."""


class RebuildError(RewriteError, ValueError):
    """A layer could not be re-created or called while rebuilding the model."""


class WeightTransferError(RewriteError, ValueError):
    """A weight could not be copied into the rebuilt layer."""


class ShapeMismatchError(RewriteError, ValueError):
    """The rebuilt model's output shapes differ from the original's.

    Attributes:
        layer: name of the first layer (in topological order) whose output shape changed.
        expected: the original output shape(s) of that layer.
        received: the rebuilt layer's output shape(s).
    """

    def __init__(self, message, layer=None, expected=None, received=None):
        super().__init__(message)
        self.layer = layer
        self.expected = expected
        self.received = received


class FidelityError(RewriteError, ValueError):
    """A layer no pass changed is not, in the rebuilt model, what it was in the original (a
    variable, dtype, trainable flag, dtype policy, quantization or LoRA state would be lost)."""
