"""The named function the bundled demo U-Net's Lambda layer calls.

The seed U-Net scales its input with ``Lambda(lambda x: x / 255)``. A Python ``lambda`` is
stored in a ``.keras`` file as bytecode, which Keras refuses to load in safe mode. The bundled
``keras_rewrite/data/seed_unet.keras`` calls this registered function instead; it is saved by
name (``"keras_rewrite>divide_by_255"``), so the file, and any model rewritten from it, loads
with ``safe_mode=True`` once this module has been imported. `keras_rewrite.io.load_model`
imports it; in your own code, ``import keras_rewrite.files.demo_layers`` before
``keras.saving.load_model``.
"""
import keras


@keras.saving.register_keras_serializable(package="keras_rewrite")
def divide_by_255(x):
    """Scale 8-bit pixel values to [0, 1], as the seed U-Net's ``lambda x: x / 255`` does."""
    return x / 255
