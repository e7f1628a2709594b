"""The command line lives in the `keras_rewrite_cli` package, beside this one, so that
``keras-rewrite --help`` does not import TensorFlow. ``keras_rewrite.cli.main`` stays for
callers that ran the command line in-process."""
from keras_rewrite_cli.entry import main, run  # noqa: F401
