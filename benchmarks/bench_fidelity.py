"""Benchmark: what the fidelity proof (keras_rewrite.verify.fidelity) costs inside a rewrite.

`rewrite(ResNet50(weights=None), [])` runs `fidelity.check_layer` on every rebuilt layer; this
times the same rewrite with the proof and with it replaced by a no-op, interleaved in one
process, and prints the medians and the fastest runs, their ratios, and the proof's own time
(summed over its calls). The machines are noisy (two runs of 9 on a quiet machine gave +4.8 %
and +15.6 % for the medians): the time inside the proof is the steadier figure.
Target: <= 5 % of the rewrite.

Run:  python benchmarks/bench_fidelity.py [--repeat N] [--model ResNet50]
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time
from unittest import mock

import keras_rewrite  # quiets TensorFlow before it loads
import keras

from keras_rewrite.verify import fidelity
from keras_rewrite.rebuild import rebuilder

APPS = {"ResNet50": keras.applications.ResNet50,
        "MobileNetV2": keras.applications.MobileNetV2,
        "DenseNet121": keras.applications.DenseNet121}


def timed_rewrite(model, proof: bool) -> tuple[float, float]:
    """(seconds of the rewrite, seconds spent inside check_layer)."""
    spent = [0.0]
    real = fidelity.check_layer

    def counted(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    replacement = counted if proof else (lambda *args, **kwargs: None)
    gc.collect()
    # The rebuilder holds the module and calls fidelity.check_layer through it.
    with mock.patch.object(rebuilder.fidelity, "check_layer", replacement):
        start = time.perf_counter()
        new = keras_rewrite.rewrite(model, [])
        total = time.perf_counter() - start
    del new
    return total, spent[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--model", default="ResNet50", choices=sorted(APPS))
    args = parser.parse_args(argv)
    model = APPS[args.model](weights=None)
    n_vars = len(model.weights)
    n_values = sum(int(v.numpy().size) for v in model.weights)
    timed_rewrite(model, True)  # warm-up (tracing, imports)
    timed_rewrite(model, False)
    with_proof, without, inside = [], [], []
    for _ in range(args.repeat):  # interleaved, so drift hits both alike
        total, spent = timed_rewrite(model, True)
        with_proof.append(total)
        inside.append(spent)
        without.append(timed_rewrite(model, False)[0])
    a, b, c = (statistics.median(x) for x in (with_proof, without, inside))
    low_a, low_b = min(with_proof), min(without)
    rows = [
        ("model", f"{args.model} (weights=None): {len(model.layers)} layers, {n_vars} "
                  f"variables, {n_values / 1e6:.1f} M values"),
        ("repeats", str(args.repeat)),
        ("rewrite with the proof (median s)", f"{a:.3f}"),
        ("rewrite without it (median s)", f"{b:.3f}"),
        ("ratio with / without, medians", f"{a / b:.3f} ({(a / b - 1) * 100:+.1f} %)"),
        ("ratio with / without, fastest runs", f"{low_a / low_b:.3f} "
                                               f"({(low_a / low_b - 1) * 100:+.1f} %)"),
        ("time inside check_layer (median s)", f"{c:.3f} ({c / a * 100:.1f} % of the rewrite)"),
        ("target", "<= 5 %"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'measure'.ljust(width)}  value")
    print("-" * (width + 40))
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
