"""Rebuilding under tf.distribute.MirroredStrategy (two logical CPU devices).

Logical devices must be configured before TensorFlow initializes its devices, which other
tests in this process have already done, so the check runs in a fresh interpreter.
"""
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import keras_rewrite, keras, numpy as np, tensorflow as tf
    from keras import layers
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(3, 3),
                                  layers.Dropout(0.2), layers.Flatten(), layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).random((8, 6, 6, 2), dtype="float32")
    y = np.zeros((8, 1), "float32")
    new = keras_rewrite.rewrite(model, [])
    kernel = new.layers[0].kernel
    print("STRATEGY", new.distribute_strategy is strategy)
    print("MIRRORED", type(getattr(kernel, "value", kernel)).__name__,
          len(getattr(getattr(kernel, "value", kernel), "values", [])))
    print("SAME", bool(np.array_equal(model.predict(x, verbose=0), new.predict(x, verbose=0))))
    history = new.fit(x, y, batch_size=4, epochs=1, verbose=0)
    print("FIT", np.isfinite(history.history["loss"][0]))
    callback = keras_rewrite.RewriteCallback(["l2", "spatial_dropout"])
    history = new.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    penalty = float(sum(new.losses))
    print("CALLBACK", np.isfinite(history.history["loss"][0]), penalty > 0,
          new.layers[1].noise_shape is not None)
""")


@pytest.mark.slow
def test_rewrite_under_mirrored_strategy_keeps_the_strategy_and_fits():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines() if " " in line)
    assert lines["STRATEGY"] == "True"
    assert lines["MIRRORED"].split()[1] == "2", lines["MIRRORED"]
    assert lines["SAME"] == "True"
    assert lines["FIT"] == "True"
    assert lines["CALLBACK"] == "True True True", lines["CALLBACK"]


KERAS_DISTRIBUTION_SCRIPT = textwrap.dedent("""
    import keras_rewrite, keras, numpy as np
    from keras import layers
    devices = keras.distribution.list_devices("cpu")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    model = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(3, 3), layers.Dropout(0.2),
                              layers.Flatten(), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).random((8, 6, 6, 2), dtype="float32")
    y = np.zeros((8, 1), "float32")
    new = keras_rewrite.rewrite(model, ["l2", "spatial_dropout"])
    sharding = new.layers[0].kernel.value.sharding
    print("DEVICES", len(devices), len(sharding.device_set))
    print("SAME", bool(np.array_equal(model.predict(x, verbose=0), new.predict(x, verbose=0))))
    history = new.fit(x, y, batch_size=4, epochs=1, verbose=0,
                      callbacks=[keras_rewrite.RewriteCallback(["l2"])])
    print("FIT", np.isfinite(history.history["loss"][0]), float(sum(new.losses)) > 0)
""")


@pytest.mark.slow
def test_rewrite_under_keras_data_parallel_on_jax():
    # Keras's own distribution API is implemented for JAX; it is global, so variables the
    # rebuild creates are laid out by it with nothing special in keras_rewrite.
    pytest.importorskip("jax", reason="install the test extras: pip install -e '.[test]'")
    env = dict(os.environ, KERAS_BACKEND="jax",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    run = subprocess.run([sys.executable, "-c", KERAS_DISTRIBUTION_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines() if " " in line)
    assert lines["DEVICES"] == "2 2"
    assert lines["SAME"] == "True"
    assert lines["FIT"] == "True True"
