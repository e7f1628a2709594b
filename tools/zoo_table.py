"""Build each model of the real-model zoo (tests/zoo.py), run the zoo checks on it and print a
Markdown table for the README.

    python tools/zoo_table.py                 # every model, every check
    python tools/zoo_table.py --only ResNet50 GPT2Backbone --checks identity save_load

The checks are tests/zoo.py's (the ones tests/test_zoo.py runs); a failing check shows the
exception type and the first line of its message, shortened.
"""
from __future__ import annotations

import argparse
import pathlib
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
    "passes": "passes",
    "l2_coverage": "L2 on every kernel",
    "save_load": "save/load",
    "export": "fold+strip, saved",
    "mixed_precision": "mixed bf16, saved",
    "fit_callback": "fit+callback",
    "cli": "CLI",
}


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
        return "?", {c: f"✗ does not build: {_short(exc)}" for c in checks}
    for check in checks:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                zoo.run_check(check, name, tmp)
                cells[check] = "✓"
            except zoo.NotApplicable as exc:
                cells[check] = f"n/a: {_short(exc, 110).split(': ', 1)[1]}"
            except Exception as exc:  # noqa: BLE001 — the table shows it
                cells[check] = f"✗ {_short(exc)}"
    zoo.clear_cache()
    return n_layers, cells


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=zoo.NAMES,
                        help="these zoo models only")
    parser.add_argument("--checks", nargs="+", metavar="CHECK", choices=list(COLUMNS),
                        default=list(COLUMNS), help=f"checks to run, of {list(COLUMNS)}")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # Keras's load-time warnings would interleave the table
    names = args.only or zoo.NAMES
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


if __name__ == "__main__":
    sys.exit(main())
