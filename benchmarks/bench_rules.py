"""Benchmark: matching a Conv2D -> BatchNormalization -> ReLU rule stays linear in model size.

Chains of Conv-BN-ReLU-Dropout blocks (the tests' `helpers.conv_chain`) of 1,000, 2,000 and
4,000 layers; per size, the best of `--repeat` runs of a dry run's matching (a `View` over the
graph, then `Rule.find`: every block matches) on a graph made once, in ms per layer, and the
ratio to the smallest chain's ms per layer (1.0 = linear). The same pattern written as a DAG
(``ReLU.of(BN.of(Conv2D))``, matched from the root back) is timed too, and so is a rule that
rewrites every match (inserting an Activation after each ReLU: a rewrite's edits cost O(1)
each, not a walk of the graph). Building the Keras model and its graph is not timed; the
garbage collector is off while timing, as `timeit` does.
Run:  python benchmarks/bench_rules.py [--repeat N]
"""
from __future__ import annotations

import argparse
import gc
import sys
import time

import keras_rewrite  # quiets TensorFlow before it loads
from keras import layers
from keras_rewrite import to_graph
from keras_rewrite.passes.rules import L, Rule
from keras_rewrite.graph.view import View

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/tests")
from helpers import conv_chain  # noqa: E402

LAYERS = (1000, 2000, 4000)


class ConvBnRelu(Rule):
    pattern = L(layers.Conv2D) >> layers.BatchNormalization >> layers.ReLU

    def rewrite(self, match):
        return list(match)


class ConvBnReluTree(ConvBnRelu):
    pattern = L(layers.ReLU).of(L(layers.BatchNormalization).of(L(layers.Conv2D)))


class ActivationAfterRelu(Rule):
    pattern = L(layers.ReLU)

    def rewrite(self, match):
        (relu,) = match
        relu.view.insert_after(relu, layers.Activation("linear", name=f"{relu.name}_linear"))
        return relu


def best_of(repeat: int, make_arguments, timed) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        arguments = make_arguments()
        gc.collect()
        gc.disable()  # as timeit does: a collection's cost grows with every live object
        try:
            start = time.perf_counter()
            value = timed(arguments)
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best, value


def time_matching(graph, repeat: int, rule=None) -> tuple[float, int]:
    rule = rule or ConvBnRelu()
    return best_of(repeat, lambda: graph, lambda g: len(rule.find(View(g))))


def time_rewriting(model, repeat: int) -> tuple[float, int]:
    rule = ActivationAfterRelu()
    return best_of(repeat, lambda: to_graph(model),
                   lambda g: sum(c.action == "replaced" for c in rule.run(g).changes))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))  # Keras builds deep chains recursively
    rows = []
    for n in LAYERS:
        model = conv_chain(n // 4)
        graph = to_graph(model)
        layer_count = sum(1 for _, d in graph.nodes(data=True) if d["kind"] == "layer")
        times = []
        for timer in (lambda: time_matching(graph, args.repeat),
                      lambda: time_matching(graph, args.repeat, ConvBnReluTree()),
                      lambda: time_rewriting(model, args.repeat)):
            seconds, found = timer()
            if found != n // 4:
                raise SystemExit(f"expected {n // 4} matches in a {n}-layer chain; found {found}")
            times.append(seconds)
        rows.append((layer_count, n // 4, times))
    base = [t / rows[0][0] for t in rows[0][2]]
    print("| layers | matches | chain: ms per layer (ratio) | DAG: ms per layer (ratio) | "
          "rewrite every match: ms per layer (ratio) |")
    print("|---|---|---|---|---|")
    for layer_count, found, times in rows:
        cells = [f"{t / layer_count * 1e3:.4f} ({t / layer_count / b:.2f})"
                 for t, b in zip(times, base)]
        print(f"| {layer_count:,} | {found:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
