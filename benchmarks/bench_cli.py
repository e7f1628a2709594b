"""CLI benchmarks, process start-up included in every figure.

0. Start-up: `keras-rewrite --help`, `--version` and a usage error (target < 0.3 s each:
   TensorFlow is imported only when a model is touched), the console script run directly.
1. `keras-rewrite convert` with all three passes on ResNet50 saved as .keras, against a Python
   script that only does load_model + save; then where the CLI's time goes (in-process).
2. Batch: N small saved models converted by one CLI call (a folder) against one call per file.
Run:  python benchmarks/bench_cli.py [--repeat 3] [--files 50]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras_rewrite  # quiets TensorFlow
import keras

from keras_rewrite import verify
from keras_rewrite.conversion import BATCH_SIZE

CLI = [sys.executable, "-m", "keras_rewrite"]
PASSES = ["--l2", "1e-4", "--spatial-dropout", "--reorder"]
LOAD_SAVE = "import sys, keras; keras.saving.load_model(sys.argv[1]).save(sys.argv[2])"


def wall(cmd, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(title, header, rows):
    print(f"\n{title}")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


def timed(label, fn, rows):
    start = time.perf_counter()
    result = fn()
    rows.append([label, f"{time.perf_counter() - start:.2f}"])
    return result


SCRIPT = Path(sys.executable).parent / "keras-rewrite"  # the console script itself


def bench_startup(repeat):
    rows = []
    for label, argv in [("keras-rewrite --help", ["--help"]),
                        ("keras-rewrite --version", ["--version"]),
                        ("usage error (convert a.keras --l2 -1)",
                         ["convert", "a.keras", "-o", "b.keras", "--l2", "-1"]),
                        ("python -m keras_rewrite_cli --help", None)]:
        cmd = ([sys.executable, "-m", "keras_rewrite_cli", "--help"] if argv is None
               else [str(SCRIPT), *argv])
        times = []
        for _ in range(max(repeat, 5)):
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True)
            times.append(time.perf_counter() - start)
        rows.append([label, f"{statistics.median(times):.3f}"])
    table("Start-up (median wall time; target < 0.3 s)", ["command", "s"], rows)


def bench_end_to_end(tmp, repeat):
    src = tmp / "resnet50.keras"
    keras.applications.ResNet50(weights=None).save(src)
    t_cli = wall([*CLI, "convert", str(src), "-o", str(tmp / "out.keras"), "--force", *PASSES],
                 repeat)
    t_ref = wall([sys.executable, "-c", LOAD_SAVE, str(src), str(tmp / "ref.keras")], repeat)
    t_start = wall([sys.executable, "-c", "import keras_rewrite, keras"], repeat)
    table("ResNet50 .keras, end to end (median wall time, process start-up included)",
          ["command", "s", "ratio"],
          [["python: load_model + save", f"{t_ref:.2f}", "1.00"],
           ["keras-rewrite convert (3 passes)", f"{t_cli:.2f}", f"{t_cli / t_ref:.2f}"],
           ["(process start-up + imports alone)", f"{t_start:.2f}", ""]])

    rows = []  # where the CLI's time goes, step by step in one process (imports excluded)
    model = timed("load_model", lambda: keras.saving.load_model(src), rows)
    new = timed("rewrite (3 passes)", lambda: keras_rewrite.rewrite(
        model, ["l2", "spatial_dropout", "reorder"]), rows)
    x = verify.random_batch(model, batch=BATCH_SIZE)
    expected = verify.predict(new, x)
    timed(f"predict original + rewritten (batch of {BATCH_SIZE})", lambda: (
        verify.predict(model, x), verify.predict(new, x)), rows)
    timed("save", lambda: new.save(tmp / "step.keras"), rows)
    timed("reload + compare (the output check)", lambda: verify.compare_models(
        new, keras.saving.load_model(tmp / "step.keras"), x, expected), rows)
    table("Where convert's time goes (one process, after imports)", ["step", "s"], rows)


def small_model(i):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4 + i % 4, 3)(inputs)
    x = keras.layers.Dropout(0.2)(keras.layers.ReLU()(keras.layers.BatchNormalization()(x)))
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def bench_batch(tmp, n_files, repeat):
    folder = tmp / "batch"
    folder.mkdir()
    for i in range(n_files):
        small_model(i).save(folder / f"m{i:03d}.keras")
    out = tmp / "batch_out"
    start = time.perf_counter()
    subprocess.run([*CLI, "convert", str(folder), "-o", str(out), "--force", *PASSES],
                   check=True, capture_output=True)
    t_batch = time.perf_counter() - start
    sample = sorted(folder.iterdir())[:max(3, n_files // 10)]
    times = []
    for path in sample:
        start = time.perf_counter()
        subprocess.run([*CLI, "convert", str(path), "-o", str(tmp / "single.keras"), "--force",
                        *PASSES], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    t_single = statistics.median(times)
    table(f"Batch: {n_files} small models (one call per file measured on {len(sample)} files)",
          ["how", "files/s", "s per file"],
          [["one call per file", f"{1 / t_single:.2f}", f"{t_single:.2f}"],
           ["one call, a folder", f"{n_files / t_batch:.2f}", f"{t_batch / n_files:.2f}"],
           ["speed-up", f"{t_single * n_files / t_batch:.1f}x", ""]])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--sections", default="startup,end-to-end,batch")
    args = parser.parse_args(argv)
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, median of {args.repeat}")
    if "startup" in args.sections:
        bench_startup(args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        if "end-to-end" in args.sections:
            bench_end_to_end(Path(tmp), args.repeat)
        if "batch" in args.sections:
            bench_batch(Path(tmp), args.files, args.repeat)


if __name__ == "__main__":
    main()
