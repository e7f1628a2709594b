"""Inference time before and after `fold_batchnorm` + `strip_inference`, same process.

    python benchmarks/bench_inference.py [--repeat N]

Each model is called as a compiled function (`model.predict_on_batch`-like: a tf.function of
`model(x, training=False)`), warmed up, then timed; the table prints medians and the speed-up.
"""
from __future__ import annotations

import argparse
import statistics
import time

import keras_rewrite  # quiets TensorFlow before it loads
import keras
import numpy as np
import tensorflow as tf

MODELS = {"ResNet50": keras.applications.ResNet50, "MobileNetV2": keras.applications.MobileNetV2}


def median_seconds(model, x, repeat):
    fn = tf.function(lambda t: model(t, training=False), jit_compile=False)
    fn(x)
    fn(x)  # traced and warm
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"keras {keras.__version__}, TensorFlow {tf.__version__}, CPU, median of {args.repeat}")
    print("| model | batch | original ms | folded + stripped ms | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for name, build in MODELS.items():
        model = build(weights=None)
        new = keras_rewrite.rewrite(model, ["fold_batchnorm", "strip_inference"])
        for batch in (1, 32):
            x = tf.constant(np.random.default_rng(0).random((batch, 224, 224, 3)), tf.float32)
            before = median_seconds(model, x, args.repeat)
            after = median_seconds(new, x, args.repeat)
            print(f"| {name} | {batch} | {before * 1e3:.1f} | {after * 1e3:.1f} | "
                  f"{before / after:.2f}x |")


if __name__ == "__main__":
    main()
