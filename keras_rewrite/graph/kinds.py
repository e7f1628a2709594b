"""The layer vocabulary, declared once: the families of layers passes, lint, surgery and the
rebuild act on, the activations that must stay float32, what a graph node calls, and how a
weight is named in reports.

Class tuples hold Keras's own classes (`isinstance` also matches subclasses); list a subclass
before its base where the order decides (Conv2DTranspose subclasses Conv2D). `names(...)`
gives the class names, for code that matches a `LayerSpec.class_name`.
"""
from __future__ import annotations

from keras import layers

__all__ = ["CONV", "CONV_TRANSPOSE", "DEPTHWISE", "SEPARABLE", "DENSE", "KERNEL_LAYERS",
           "RECURRENT", "ACTIVATION_LAYERS", "MAX_POOLING", "AVERAGE_POOLING", "DROPOUTS",
           "TRAINING_ONLY", "NORMALIZATIONS", "FLOAT32_ACTIVATIONS", "CALL_KINDS", "names",
           "weight_label"]

CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
CONV_TRANSPOSE = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
DENSE = (layers.Dense,)
# The conv/dense family: a kernel and one bias value per output channel. Subclasses first.
KERNEL_LAYERS = CONV_TRANSPOSE + DEPTHWISE + SEPARABLE + CONV + DENSE
RECURRENT = (layers.LSTM, layers.GRU, layers.SimpleRNN)
ACTIVATION_LAYERS = (layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU,
                     layers.PReLU, layers.Softmax)
MAX_POOLING = (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D)
AVERAGE_POOLING = (layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D)
DROPOUTS = (layers.Dropout, layers.SpatialDropout1D, layers.SpatialDropout2D,
            layers.SpatialDropout3D)
# Layers that do nothing at inference (SpatialDropout* subclass Dropout).
TRAINING_ONLY = (layers.Dropout, layers.GaussianNoise, layers.GaussianDropout,
                 layers.AlphaDropout, layers.ActivityRegularization)
# Normalizations. Keras computes them in float32 whatever their policy (Keras 3.15's sources:
# BatchNormalization and GroupNormalization upcast float16/bfloat16 inputs, LayerNormalization
# computes `ops.layer_normalization` in at least float32); their offsets (beta, and bias
# before them) are not worth regularizing.
NORMALIZATIONS = (layers.BatchNormalization, layers.LayerNormalization,
                  layers.GroupNormalization)
# A model output produced through one of these is kept float32 (Keras mixed-precision guide).
FLOAT32_ACTIVATIONS = ("softmax", "log_softmax", "sigmoid")
# Node kinds that call something (see `keras_rewrite.graph.schema`).
CALL_KINDS = ("layer", "op")


def names(classes) -> tuple:
    """The class names of `classes`, in order: ``names(DEPTHWISE)``."""
    return tuple(cls.__name__ for cls in classes)


def weight_label(key) -> str:
    """How reports name the weight with key ``(name, occurrence)`` (`_keras.variable_key_list`):
    ``kernel``, or ``kernel#1`` for the second weight of that name.

    >>> weight_label(("kernel", 0)), weight_label(("kernel", 1))
    ('kernel', 'kernel#1')
    """
    name, occurrence = key
    return name if occurrence == 0 else f"{name}#{occurrence}"


def saves_as_arguments(cls) -> bool:
    """A Functional subclass whose `get_config` holds its constructor's arguments (every
    KerasHub backbone and task; `Backbone.from_config` is `cls(**config)`): a file of it
    rebuilds the class's own graph, so a rewrite of it saves as a recipe. Keras's Functional
    and Sequential, and subclasses keeping Functional's `get_config`, save their graph."""
    from keras_rewrite._keras import Functional
    import keras

    return (isinstance(cls, type) and issubclass(cls, Functional)
            and cls not in (Functional, keras.Sequential)
            and cls.get_config is not Functional.get_config)
