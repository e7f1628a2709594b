"""Kept for one release (0.2.x): the command line moved into the package, `keras_rewrite.cli`."""
from keras_rewrite.cli import main, run  # noqa: F401
