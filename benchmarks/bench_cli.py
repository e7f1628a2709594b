"""CLI benchmarks, process start-up included in every figure.

0. Start-up: `keras-rewrite --help`, `--version`, a usage error and `keras-rewrite passes`
   (target < 0.3 s each: TensorFlow is imported only when a model is touched; `passes` reads
   the built-in passes' declarations from their source), the console script run directly.
1. `keras-rewrite convert` (with its reload check) on ResNet50 and on a KerasHub BertBackbone
   (built from constructor arguments and saved first; nothing is downloaded), each saved as
   .keras, against a Python script that only does load_model + save; then where the CLI's
   time goes (in-process).
2. Batch: N small saved models converted by one CLI call (a folder) with --jobs 1 and
   --jobs J, against one call per file.
Run:  python benchmarks/bench_cli.py [--repeat 3] [--files 50] [--jobs 2] [--sections startup]
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
SCRIPT = Path(sys.executable).parent / "keras-rewrite"  # the console script itself
CLI = [str(SCRIPT)]
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



def bench_startup(repeat):
    rows = []
    for label, argv in [("keras-rewrite --help", ["--help"]),
                        ("keras-rewrite --version", ["--version"]),
                        ("usage error (convert a.keras --l2 -1)",
                         ["convert", "a.keras", "-o", "b.keras", "--l2", "-1"]),
                        ("keras-rewrite passes (the registered passes)", ["passes"]),
                        ("python -m keras_rewrite --help", None)]:
        cmd = ([sys.executable, "-m", "keras_rewrite", "--help"] if argv is None
               else [str(SCRIPT), *argv])
        times = []
        for _ in range(max(repeat, 5)):
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True)
            times.append(time.perf_counter() - start)
        rows.append([label, f"{statistics.median(times):.3f}"])
    table("Start-up (median wall time; target < 0.3 s)", ["command", "s"], rows)


def bert_backbone():
    """A small BERT encoder from constructor arguments (no preset, no download)."""
    import keras_hub

    return keras_hub.models.BertBackbone(vocabulary_size=30522, num_layers=4, num_heads=4,
                                         hidden_dim=256, intermediate_dim=1024,
                                         max_sequence_length=128)


MODELS = {  # name -> (builder, passes)
    "ResNet50": (lambda: keras.applications.ResNet50(weights=None), PASSES),
    "KerasHub BertBackbone (4 layers, hidden 256)": (bert_backbone, ["--l2", "1e-4"]),
}


def bench_end_to_end(tmp, repeat):
    rows = []
    for name, (build, passes) in MODELS.items():
        src = tmp / "model.keras"
        build().save(src)
        t_cli = wall([*CLI, "convert", str(src), "-o", str(tmp / "out.keras"), "--force",
                      *passes], repeat)
        t_ref = wall([sys.executable, "-c", LOAD_SAVE, str(src), str(tmp / "ref.keras")], repeat)
        rows.append([name, " ".join(passes), f"{t_ref:.2f}", f"{t_cli:.2f}",
                     f"{t_cli / t_ref:.2f}"])
        if name == "ResNet50":
            steps(tmp, src)
    t_start = wall([sys.executable, "-c", "import keras_rewrite, keras"], repeat)
    table("convert (reload check on) vs a load_model + save script (median wall time, process "
          f"start-up included; start-up + imports alone {t_start:.2f} s)",
          ["model", "passes", "load+save s", "convert s", "ratio"], rows)


def steps(tmp, src):
    """Where convert's time goes, step by step in one process (imports excluded)."""
    rows = []
    model = timed("load_model", lambda: keras.saving.load_model(src), rows)
    new = timed("rewrite (3 passes)", lambda: keras_rewrite.rewrite(
        model, ["l2", "spatial_dropout", "reorder"]), rows)
    x = verify.random_batch(model, batch=BATCH_SIZE)
    expected = verify.predict(new, x)
    timed(f"predict original + rewritten (batch of {BATCH_SIZE})", lambda: (
        verify.predict(model, x), verify.predict(new, x)), rows)
    timed("save", lambda: new.save(tmp / "step.keras"), rows)
    reloaded = timed("reload (the output check)",
                     lambda: keras.saving.load_model(tmp / "step.keras"), rows)
    timed("compare layers, configs, weight hashes, predictions",
          lambda: verify.compare_models(new, reloaded, x, expected), rows)
    table("Where convert's time goes on ResNet50 (one process, after imports)", ["step", "s"],
          rows)


def small_model(i):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4 + i % 4, 3)(inputs)
    x = keras.layers.Dropout(0.2)(keras.layers.ReLU()(keras.layers.BatchNormalization()(x)))
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def bench_batch(tmp, n_files, repeat, jobs):
    folder = tmp / "batch"
    folder.mkdir()
    for i in range(n_files):
        small_model(i).save(folder / f"m{i:03d}.keras")
    batch_times = {}
    for n in sorted({1, jobs}):
        out = tmp / f"batch_out_{n}"
        start = time.perf_counter()
        subprocess.run([*CLI, "convert", str(folder), "-o", str(out), "--force", "--jobs",
                        str(n), *PASSES], check=True, capture_output=True)
        batch_times[n] = time.perf_counter() - start
    sample = sorted(folder.iterdir())[:max(3, n_files // 10)]
    times = []
    for path in sample:
        start = time.perf_counter()
        subprocess.run([*CLI, "convert", str(path), "-o", str(tmp / "single.keras"), "--force",
                        *PASSES], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    t_single = statistics.median(times)
    rows = [["one call per file", f"{1 / t_single:.2f}", f"{t_single:.2f}", "1.0x"]]
    for n, t in batch_times.items():
        rows.append([f"one call, a folder, --jobs {n}", f"{n_files / t:.2f}",
                     f"{t / n_files:.2f}", f"{t_single * n_files / t:.1f}x"])
    table(f"Batch: {n_files} small models (one call per file measured on {len(sample)} files; "
          f"{os.cpu_count()} CPUs)", ["how", "files/s", "s per file", "speed-up"], rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the batch")
    parser.add_argument("--sections", default="startup,end-to-end,batch")
    args = parser.parse_args(argv)
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, median of {args.repeat}")
    if "startup" in args.sections:
        bench_startup(args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        if "end-to-end" in args.sections:
            bench_end_to_end(Path(tmp), args.repeat)
        if "batch" in args.sections:
            bench_batch(Path(tmp), args.files, args.repeat, args.jobs)


if __name__ == "__main__":
    main()
