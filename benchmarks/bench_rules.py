"""Benchmark: matching a Conv2D -> BatchNormalization -> ReLU rule stays linear in model size.

Chains of Conv-BN-ReLU-Dropout blocks (the tests' `helpers.conv_chain`) of 1,000, 2,000 and
4,000 layers; per size, the best of `--repeat` runs of a dry run's matching (a `View` over the
graph, then `Rule.find`: every block matches) on a graph made once, in ms per layer, and the
ratio to the smallest chain's ms per layer (1.0 = linear). Building the Keras model and its
graph is not timed; the garbage collector is off while timing, as `timeit` does. Run:  python benchmarks/bench_rules.py [--repeat N]
"""
from __future__ import annotations

import argparse
import gc
import sys
import time

import keras_rewrite  # quiets TensorFlow before it loads
from keras import layers
from keras_rewrite import to_graph
from keras_rewrite.rules import L, Rule
from keras_rewrite.view import View

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/tests")
from helpers import conv_chain  # noqa: E402

LAYERS = (1000, 2000, 4000)


class ConvBnRelu(Rule):
    pattern = L(layers.Conv2D) >> layers.BatchNormalization >> layers.ReLU

    def rewrite(self, match):
        return list(match)


def time_matching(graph, repeat: int) -> tuple[float, int]:
    rule, best, found = ConvBnRelu(), float("inf"), 0
    for _ in range(repeat):
        gc.collect()
        gc.disable()  # as timeit does: a collection's cost grows with every live object
        try:
            start = time.perf_counter()
            found = len(rule.find(View(graph)))
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best, found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))  # Keras builds deep chains recursively
    rows = []
    for n in LAYERS:
        graph = to_graph(conv_chain(n // 4))
        layer_count = sum(1 for _, d in graph.nodes(data=True) if d["kind"] == "layer")
        seconds, found = time_matching(graph, args.repeat)
        if found != n // 4:
            raise SystemExit(f"expected {n // 4} matches in a {n}-layer chain; found {found}")
        rows.append((layer_count, found, seconds))
    base = rows[0][2] / rows[0][0]
    print("| layers | matches | matching ms | ms per layer | ratio |")
    print("|---|---|---|---|---|")
    for layer_count, found, seconds in rows:
        per_layer = seconds / layer_count
        print(f"| {layer_count:,} | {found:,} | {seconds * 1e3:.1f} | {per_layer * 1e3:.4f} | "
              f"{per_layer / base:.2f} |")


if __name__ == "__main__":
    main()
