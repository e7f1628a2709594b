"""The errors surgery raises: each a `SurgeryError` (a `RewriteError`) naming the layer."""
from keras_rewrite.errors import RewriteError

__all__ = ["SurgeryError", "LayerNotFoundError", "ChannelIndexError", "UnsupportedLayerError",
           "TiedChannelsError", "SurgeryShapeError"]


class SurgeryError(RewriteError, ValueError):
    """A surgery request that cannot be carried out; the message names the layer."""


class LayerNotFoundError(SurgeryError):
    """No layer of that name (or that object) in the model."""


class ChannelIndexError(SurgeryError):
    """A channel index out of range, no channel given, or every channel of a layer deleted."""


class UnsupportedLayerError(SurgeryError):
    """A layer kind the operation cannot act on (or propagate channel deletions through)."""


class TiedChannelsError(SurgeryError):
    """Channels tied to others (a residual merge, a shared layer) that cannot be deleted too."""


class SurgeryShapeError(SurgeryError):
    """After the edit a consumer can no longer take the shape it receives."""
