"""Rebuilding under tf.distribute.MirroredStrategy (two logical CPU devices).

Logical devices must be configured before TensorFlow initializes its devices, which other
tests in this process have already done, so the check runs in a fresh interpreter.
"""
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
