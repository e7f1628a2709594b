"""Build each model of the real-model zoo (tests/zoo.py), run the zoo checks on it and print a
Markdown table for the README.

    python tools/zoo_table.py                 # every model, every check
    python tools/zoo_table.py --only ResNet50 GPT2Backbone --checks identity save_load
    python tools/zoo_table.py --backends tensorflow jax torch [--quick]

The checks are tests/zoo.py's (the ones tests/test_zoo.py runs); a failing check shows the
exception type and the first line of its message, shortened.

``--backends`` runs the table once per Keras backend, each in its own process with
KERAS_BACKEND set (Keras picks its backend once per process), and prints one column per
backend and check (identity, passes, save/load unless ``--checks`` says otherwise). What a
backend's Keras cannot do at all is `n/a` with the reason (tests/zoo.py's
``backend_limitation``). ``--quick`` runs the models of ``QUICK`` only.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import warnings

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import keras_rewrite  # noqa: E402,F401  (quiets TensorFlow before keras imports it)
import zoo  # noqa: E402

COLUMNS = {
    "identity": "identity exact",
    "state": "state kept",
    "passes": "passes",
    "l2_coverage": "L2 on every kernel",
    "save_load": "save/load",
    "export": "fold+strip, saved",
    "mixed_precision": "mixed bf16, saved",
    "fit_callback": "fit+callback",
    "cli": "CLI",
}


BACKEND_CHECKS = ["identity", "state", "passes", "save_load"]
BACKEND_SHORT = {"tensorflow": "tf", "jax": "jax", "torch": "torch"}
QUICK = zoo.QUICK  # one or two models of each source (tests/zoo.py)


def _short(exc, width=90):
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".replace("|", "\\|")
    return text if len(text) <= width else text[:width - 1] + "…"


def run_model(name, checks):
    """{check: cell text} for one model, plus its layer count."""
    cells = {}
    try:
        model, _ = zoo.get(name)
        n_layers = len(model.layers)
    except Exception as exc:  # noqa: BLE001 — the table shows it
        zoo.clear_cache()
        reason = zoo.backend_limitation(exc)
        if reason:
            return "?", {c: f"n/a: {reason}" for c in checks}
        return "?", {c: f"✗ does not build: {_short(exc)}" for c in checks}
    for check in checks:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                zoo.run_check(check, name, tmp)
                cells[check] = "✓"
            except zoo.NotApplicable as exc:
                cells[check] = f"n/a: {_short(exc, 110).split(': ', 1)[1]}"
            except Exception as exc:  # noqa: BLE001 — the table shows it
                reason = zoo.backend_limitation(exc)
                cells[check] = f"n/a: {reason}" if reason else f"✗ {_short(exc)}"
    zoo.clear_cache()
    return n_layers, cells


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=zoo.NAMES,
                        help="these zoo models only")
    parser.add_argument("--checks", nargs="+", metavar="CHECK", choices=list(COLUMNS),
                        default=list(COLUMNS), help=f"checks to run, of {list(COLUMNS)}")
    parser.add_argument("--backends", nargs="+", metavar="BACKEND",
                        choices=list(BACKEND_SHORT),
                        help="one column per backend and check, each backend in a process of "
                             "its own (checks default to identity, state, passes, save_load)")
    parser.add_argument("--quick", action="store_true", help=f"the models of QUICK only")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one backend's
    args = parser.parse_args(argv)
    if args.quick and not args.only:
        args.only = QUICK
    if args.backends:
        checks = args.checks if args.checks != list(COLUMNS) else BACKEND_CHECKS
        return by_backend(args.backends, args.only or zoo.NAMES, checks)
    warnings.simplefilter("ignore")  # Keras's load-time warnings would interleave the table
    names = args.only or zoo.NAMES
    if args.json:  # what by_backend reads from each backend's process
        start = time.perf_counter()
        rows = {name: run_model(name, args.checks) for name in names}
        print("ZOO_JSON " + json.dumps({"backend": zoo.keras.backend.backend(), "rows": rows,
                                        "seconds": time.perf_counter() - start}))
        return 0
    header = ["model", "source", "layers"] + [COLUMNS[c] for c in args.checks]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    passed = {c: 0 for c in args.checks}
    start = time.perf_counter()
    for name in names:
        n_layers, cells = run_model(name, args.checks)
        for c in args.checks:
            passed[c] += cells[c] == "✓"
        row = [name, zoo.ZOO[name].source, str(n_layers)] + [cells[c] for c in args.checks]
        print("| " + " | ".join(row) + " |", flush=True)
    print()
    print(f"{len(names)} models, {time.perf_counter() - start:.0f} s. Passed: "
          + ", ".join(f"{COLUMNS[c]} {passed[c]}/{len(names)}" for c in args.checks))
    return 0


def by_backend(backends, names, checks):
    """The table with a column per backend and check, each backend run in its own process."""
    results = {}
    for backend in backends:
        env = dict(os.environ, KERAS_BACKEND=backend)
        command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--json",
                   "--only", *names, "--checks", *checks]
        start = time.perf_counter()
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [l for l in run.stdout.splitlines() if l.startswith("ZOO_JSON ")]
        if run.returncode != 0 or not lines:
            print(f"KERAS_BACKEND={backend}: the zoo process failed:\n{run.stderr[-3000:]}",
                  file=sys.stderr)
            return 1
        results[backend] = json.loads(lines[0][len("ZOO_JSON "):])
        results[backend]["wall"] = time.perf_counter() - start
        got = results[backend]["backend"]
        if got != backend:
            print(f"KERAS_BACKEND={backend} ran on {got}", file=sys.stderr)
            return 1
    header = ["model", "source", "layers"] + [f"{COLUMNS[c]} ({BACKEND_SHORT[b]})"
                                              for c in checks for b in backends]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in names:
        layer_counts = [results[b]["rows"][name][0] for b in backends]
        layers = next((str(n) for n in layer_counts if n != "?"), "?")
        row = [name, zoo.ZOO[name].source, layers] + [results[b]["rows"][name][1][c]
                                                      for c in checks for b in backends]
        print("| " + " | ".join(row) + " |", flush=True)
    print()
    summary = []
    for b in backends:
        cells = [results[b]["rows"][n][1][c] for n in names for c in checks]
        summary.append(f"{b}: {results[b]['seconds']:.0f} s for the checks "
                       f"({results[b]['wall']:.0f} s with start-up), "
                       f"{sum(x == '✓' for x in cells)} ✓, "
                       f"{sum(x.startswith('n/a') for x in cells)} n/a, "
                       f"{sum(x.startswith('✗') for x in cells)} ✗ of {len(cells)}")
    print(f"{len(names)} models. " + "; ".join(summary) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
