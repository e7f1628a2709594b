"""Benchmarks: keras_rewrite against keras.models.clone_model + set_weights(get_weights()).

Prints tables of medians and ratios measured in one process (the machines are noisy: compare
the ratios, not the seconds). Run:  python benchmarks/bench_rewrite.py [--repeat N] [--quick]
Sections: identity (rewrite(model, []) vs clone+copy), passes (all three passes vs clone+copy),
chains (time per layer, 250 / 1,000 / 3,000 blocks), memory (peak extra RSS of one rewrite).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import sys
import threading
import time

import keras_rewrite  # quiets TensorFlow before it loads
import keras

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/tests")
from helpers import conv_chain  # noqa: E402

APPS = {
    "ResNet50": keras.applications.ResNet50,
    "DenseNet121": keras.applications.DenseNet121,
    "EfficientNetB0": keras.applications.EfficientNetB0,
}
ALL_PASSES = ["l2", "spatial_dropout", "reorder"]


def bert_backbone():
    """A KerasHub backbone built from constructor arguments (BERT-small-like; no download)."""
    import keras_hub

    return keras_hub.models.BertBackbone(vocabulary_size=30522, num_layers=4, num_heads=8,
                                         hidden_dim=512, intermediate_dim=2048,
                                         max_sequence_length=512)


HUB = [("BertBackbone (KerasHub, 4 layers)", bert_backbone)]


def clone_and_copy(model):
    # clone_model cannot build chains deeper than ~990 layers at Python's default recursion
    # limit; the baseline gets the raised limit that keras_rewrite sets for itself.
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 2000 + 4 * len(model.layers)))
    try:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    finally:
        sys.setrecursionlimit(old)
    return clone


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        del result
    return statistics.median(times)


def deep_model(blocks):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20 * blocks + 5000))
    try:
        return conv_chain(blocks, filters=4, size=8)
    finally:
        sys.setrecursionlimit(old)


def table(title, header, rows):
    print(f"\n{title}")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


def section_compare(models, passes, repeat, title):
    rows = []
    for name, build in models:
        model = build()
        n = len(model.layers)
        fn_rewrite = lambda: keras_rewrite.rewrite(model, passes)  # noqa: E731
        fn_clone = lambda: clone_and_copy(model)  # noqa: E731
        fn_rewrite(), fn_clone()  # warm-up: first calls trace/allocate once per process
        t_clone = median_time(fn_clone, repeat)
        t_rewrite = median_time(fn_rewrite, repeat)
        rows.append([name, n, f"{t_clone:.3f}", f"{t_rewrite:.3f}", f"{t_rewrite / t_clone:.2f}"])
        del model
        gc.collect()
    table(title, ["model", "layers", "clone+copy s", "rewrite s", "ratio"], rows)


def section_chains(blocks_list, repeat):
    rows = []
    for blocks in blocks_list:
        model = deep_model(blocks)
        n = len(model.layers)
        keras_rewrite.rewrite(model)
        t = median_time(lambda: keras_rewrite.rewrite(model), repeat)
        t_clone = median_time(lambda: clone_and_copy(model), repeat)
        rows.append([blocks, n, f"{t:.2f}", f"{1000 * t / n:.3f}",
                     f"{t / t_clone:.2f}"])
        del model
        gc.collect()
    table("Identity rewrite of Conv-BN-ReLU-Dropout chains (time per layer should stay flat)",
          ["blocks", "layers", "rewrite s", "ms/layer", "vs clone+copy"], rows)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def heap_in_use():
    """Bytes malloc has handed out and not taken back (small blocks + mmapped blocks).

    RSS is the wrong meter here: pages freed while the model was built are reused without
    growing RSS. TensorFlow's CPU tensors and NumPy arrays both come from malloc.
    """
    info = _libc.mallinfo2()
    return info.uordblks + info.hblkhd


def peak_extra_memory(fn):
    """Peak malloc'ed bytes above the starting point while `fn` runs (sampled every 2 ms)."""
    gc.collect()
    start = heap_in_use()
    peak = [start]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], heap_in_use())
            time.sleep(0.002)

    thread = threading.Thread(target=sample)
    thread.start()
    result = fn()
    done.set()
    thread.join()
    peak[0] = max(peak[0], heap_in_use())
    return peak[0] - start, result


def section_memory():
    model = keras.applications.ResNet50(weights=None)
    weight_bytes = sum(w.numpy().nbytes for w in model.weights)
    rows = []
    for label in ("first rewrite in the process", "second rewrite"):
        extra, result = peak_extra_memory(lambda: keras_rewrite.rewrite(model))
        rows.append([label, f"{weight_bytes / 2**20:.1f}", f"{extra / 2**20:.1f}",
                     f"{extra / weight_bytes:.2f}"])
        del result
        gc.collect()
    extra, result = peak_extra_memory(lambda: clone_and_copy(model))
    rows.append(["clone+copy, for comparison", f"{weight_bytes / 2**20:.1f}",
                 f"{extra / 2**20:.1f}", f"{extra / weight_bytes:.2f}"])
    table("Peak extra memory (malloc in use) of one rewrite of ResNet50 (224x224, 1000 classes); "
          "the new model's own weights are included",
          ["run", "model weights MiB", "peak extra MiB", "ratio"], rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller chains")
    parser.add_argument("--sections", default="identity,passes,chains,memory")
    args = parser.parse_args(argv)
    repeat = 2 if args.quick else args.repeat
    sections = args.sections.split(",")
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, median of {repeat}")
    apps = [(name, lambda b=build: b(weights=None)) for name, build in APPS.items()]
    if "identity" in sections:
        section_compare(apps + HUB, [], repeat, "Identity rewrite vs clone_model + set_weights")
    if "passes" in sections:
        models = apps + [("chain 1000 blocks", lambda: deep_model(1000))]
        section_compare([(n, b) for n, b in models if "chain" not in n or not args.quick],
                        ALL_PASSES, repeat,
                        f"rewrite(model, {ALL_PASSES}) vs clone_model + set_weights")
    if "chains" in sections:
        section_chains([50, 250] if args.quick else [250, 1000, 3000], max(1, repeat // 2))
    if "memory" in sections:
        section_memory()


if __name__ == "__main__":
    main()
