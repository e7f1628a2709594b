"""`python -m keras_rewrite ...` runs the `keras-rewrite` command line (see `cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
