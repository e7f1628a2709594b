"""TensorFlow's start-up log noise does not reach users of the library (either backend)."""
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import keras_rewrite, keras, numpy as np
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Dropout(0.1)(keras.layers.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)))
    model.compile(optimizer="sgd", loss="mse")
    new = keras_rewrite.rewrite(model, ["l2", "spatial_dropout", "reorder"])
    x, y = np.zeros((4, 4, 4, 1), "float32"), np.zeros((4, 1), "float32")
    new.fit(x, y, epochs=1, verbose=0)
    new.predict(x, verbose=0)
    print("done")
""")


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_no_log_noise_on_stderr(backend):
    if backend == "jax":
        pytest.importorskip("jax", reason="install the test extras: pip install -e '.[test]'")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_", "KERAS_REWRITE_"))}  # as on a user's machine
    env["KERAS_BACKEND"] = backend
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "done"
    assert run.stderr == "", run.stderr[-3000:]


CHANNELS_FIRST = textwrap.dedent("""
    import os, keras_rewrite, keras, numpy as np
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    inputs = keras.Input((3, 8, 8))
    x = keras.layers.Conv2D(4, 3, data_format="channels_first")(inputs)
    x = keras.layers.BatchNormalization(axis=1)(x)
    x = keras.layers.MaxPooling2D(data_format="channels_first")(x)
    model = keras.Model(inputs, x)
    new = keras_rewrite.rewrite(model, ["l2", "spatial_dropout", "reorder"])
    x = np.random.default_rng(0).random((2, 3, 8, 8)).astype("float32")
    print(np.array_equal(model.predict(x, verbose=0), new.predict(x, verbose=0)))
""")


@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_importing_keras_rewrite_first_keeps_channels_first_convolutions_working():
    # Quieting TensorFlow once meant TF_ENABLE_ONEDNN_OPTS=0, and without oneDNN TensorFlow
    # has no CPU kernel for a channels_first Conv2D (UnimplementedError in the whole process).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_", "KERAS_REWRITE_"))}
    env["KERAS_BACKEND"] = "tensorflow"
    run = subprocess.run([sys.executable, "-c", CHANNELS_FIRST], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "True"
    assert run.stderr == "", run.stderr[-3000:]
