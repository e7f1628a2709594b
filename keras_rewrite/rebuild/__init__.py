"""Graph -> model: re-create the layers, carry weights and state, check shapes, compile like the
original; `RewrittenFunctional`, the model class whose rewrite survives saving."""
from keras_rewrite.rebuild.rebuilder import to_model

__all__ = ["to_model"]
