"""Peak RSS of ``keras-rewrite convert`` against a plain ``keras.saving.load_model`` of the
same file, in the same run.

Two files: an attacker's (a one-layer model whose ``config.json`` holds a 200 MiB string
under a key Keras ignores) and ResNet50 (``keras.applications``, ``weights=None``, 224x224,
1,000 classes). Each command runs in a fresh process under a small wrapper that reports the
peak RSS of its one child (``getrusage(RUSAGE_CHILDREN)``), so no other process's maximum is
mixed in. "imports" is a process that only imports Keras (TensorFlow included): Keras's load
costs `load - imports`, convert adds `convert - load` to it.

The 200 MiB config is over the default limit (``--max-config-mb 64``): convert refuses it
before Keras reads it (a row of its own); the comparison row raises the limit.

    python benchmarks/bench_convert_memory.py                # 200 MiB config, ResNet50
    python benchmarks/bench_convert_memory.py --config-mb 40 # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

PEAK_RSS = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode); "
            "sys.stderr.buffer.write(done.stderr[-2000:])")


def peak_mib(argv, cwd) -> tuple[float, int]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": cwd}
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True)
    kib, code = done.stdout.split()
    return int(kib) / 1024, int(code)


def make_files(folder: str, config_mb: float) -> dict:
    import keras

    inputs = keras.Input((4,))
    small = keras.Model(inputs, keras.layers.Dense(3, name="d")(inputs))
    small.save(os.path.join(folder, "small.keras"))
    with zipfile.ZipFile(os.path.join(folder, "small.keras")) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    config = json.loads(entries["config.json"])
    config["ignored_by_keras"] = "x" * int(config_mb * 1024 * 1024)
    hostile = os.path.join(folder, "hostile.keras")
    with zipfile.ZipFile(hostile, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in {**entries, "config.json": json.dumps(config).encode()}.items():
            archive.writestr(name, data)
    resnet = os.path.join(folder, "resnet50.keras")
    keras.applications.ResNet50(weights=None).save(resnet)
    return {"hostile": hostile, "resnet": resnet}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-mb", type=float, default=200,
                        help="size of the attacker's string in MiB (default 200)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-convert-memory-")
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(args, folder: str) -> None:
    # Built in a child: this process stays free of TensorFlow.
    done = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                           "import bench_convert_memory as b, json; "
                           "print(json.dumps(b.make_files(sys.argv[2], float(sys.argv[3]))))",
                           os.path.dirname(os.path.abspath(__file__)), folder,
                           str(args.config_mb)],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    files = json.loads(done.stdout.strip().splitlines()[-1])
    python = sys.executable
    imports, _ = peak_mib([python, "-c", "import keras"], folder)
    mb = args.config_mb
    rows = []
    cases = [
        (f"{mb:g} MiB config (limit raised: --max-config-mb {int(mb * 1.25) + 1})",
         files["hostile"], ["--max-config-mb", str(int(mb * 1.25) + 1)]),
        (f"{mb:g} MiB config, default limit (refused, exit 3)", files["hostile"], []),
        ("ResNet50 (weights=None)", files["resnet"], []),
    ]
    for label, path, extra in cases:
        load, code = peak_mib([python, "-c", f"import keras; keras.saving.load_model({path!r})"],
                              folder)
        assert code == 0, label
        out = os.path.join(folder, f"out{len(rows)}.keras")
        convert, code = peak_mib([python, "-m", "keras_rewrite_cli", "convert", path, "-o",
                                  out, *extra], folder)
        rows.append((label, load, convert, code))
    print(f"imports only (import keras): {imports:,.0f} MiB")
    print()
    print("| file | load_model MiB | convert MiB | exit | convert / load | convert adds, "
          "× Keras's load cost |")
    print("|---|---|---|---|---|---|")
    for label, load, convert, code in rows:
        cost = load - imports
        print(f"| {label} | {load:,.0f} | {convert:,.0f} | {code} | {convert / load:.2f} | "
              f"{(convert - load) / cost:+.2f} ({convert - load:+,.0f} of {cost:,.0f} MiB) |")


if __name__ == "__main__":
    main()
