import keras_rewrite  # noqa: F401  (quiet TensorFlow before anything imports it)

import pathlib
import sys

# examples/ is a folder of scripts, not a package: make its modules importable by the tests.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
