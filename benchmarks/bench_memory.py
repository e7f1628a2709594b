"""Peak extra memory of rewriting a big KerasHub model, as the process's peak RSS shows it.

Each case runs in a fresh process: build a GemmaBackbone from constructor arguments (about a
billion parameters by default; nothing is downloaded), then reset the kernel's peak-RSS mark
(/proc/self/clear_refs), take the RSS, run the case once, and read the peak (VmHWM). The extra
memory is peak - RSS before, reported against the size of the model's weights.

    python benchmarks/bench_memory.py            # ~1.0 B parameters (4 GB of float32)
    python benchmarks/bench_memory.py --small    # a 40 M-parameter model, for a quick look
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

CASES = {
    "clone_model + set_weights": "clone",
    "rewrite(model)": "rewrite",
    "rewrite(model, ['l2'])": "rewrite_l2",
    "rewrite(model, copy=False)": "move",
}
BIG = dict(vocabulary_size=256000, num_layers=8, num_query_heads=8, num_key_value_heads=1,
           hidden_dim=2048, intermediate_dim=16384, head_dim=256)
SMALL = dict(vocabulary_size=32000, num_layers=2, num_query_heads=4, num_key_value_heads=1,
             hidden_dim=512, intermediate_dim=4096, head_dim=128)


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def run_case(case: str, sizes: dict) -> dict:
    import gc
    import time

    import keras_rewrite
    import keras
    import keras_hub

    model = keras_hub.models.GemmaBackbone(**sizes)
    weights = sum(_nbytes(v) for v in model.weights)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    if case == "clone":
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    elif case == "rewrite":
        keras_rewrite.rewrite(model)
    elif case == "rewrite_l2":
        keras_rewrite.rewrite(model, ["l2"])
    elif case == "move":
        keras_rewrite.rewrite(model, copy=False)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    params = sum(int(np.prod(v.shape)) for v in model.weights)
    return {"params": params, "weights": weights, "extra": peak - before, "seconds": seconds}


def _nbytes(variable) -> int:
    return int(np.prod(variable.shape)) * np.dtype(variable.dtype).itemsize


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = SMALL if args.small else BIG
    if args.case:
        print(json.dumps(run_case(args.case, sizes)))
        return 0
    rows = []
    for label, case in CASES.items():
        cmd = [sys.executable, __file__, "--case", case] + (["--small"] if args.small else [])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            rows.append((label, "failed: " + done.stderr.strip().splitlines()[-1][:80], "", ""))
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((label, f"{r['extra'] / 2**20:,.0f} MiB", f"{r['extra'] / r['weights']:.2f}",
                     f"{r['seconds']:.1f}"))
    print(f"GemmaBackbone, {r['params'] / 1e9:.2f} B parameters, weights "
          f"{r['weights'] / 2**30:.2f} GiB (float32); peak extra RSS of one call")
    print("| case | peak extra | × weights | seconds |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
