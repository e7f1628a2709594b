"""`python -m keras_rewrite ...` runs the `keras-rewrite` command line (see `keras_rewrite_cli`).

`run` removes the current folder (which ``-m`` put first on ``sys.path``) before any model is
loaded; ``python -m keras_rewrite_cli`` does the same without importing this package first
(faster ``--help``)."""
from keras_rewrite.cli.entry import run

if __name__ == "__main__":
    run()
