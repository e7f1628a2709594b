"""The library is Keras-3-native: its core and pass tests also pass on the JAX backend.

Keras picks its backend once per process, so the JAX run is a separate pytest process.
The CLI tests are not included: the CLI loads and writes files through the TensorFlow
backend, which is the one the package installs.
"""
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent
PORTABLE_TESTS = ["test_roundtrip.py", "test_graph.py", "test_l2.py", "test_spatial_dropout.py",
                  "test_reorder.py", "test_edit.py", "test_lint.py", "test_callback.py"]


@pytest.mark.slow
def test_core_and_pass_tests_pass_under_jax():
    pytest.importorskip("jax", reason="install the test extras: pip install -e '.[test]'")
    env = dict(os.environ, KERAS_BACKEND="jax")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider",
         *[str(next(HERE.rglob(name))) for name in PORTABLE_TESTS]],
        env=env, capture_output=True, text=True, timeout=1800, cwd=HERE.parent)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1] and "failed" not in run.stdout.splitlines()[-1]
