"""Kept for one release (0.2.x): moved to `keras_rewrite.cli.entry`."""
from keras_rewrite.cli.entry import main, run  # noqa: F401
