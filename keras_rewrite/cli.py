"""The ``keras-rewrite`` command line (also ``python -m keras_rewrite``).

Subcommands: ``convert`` (rewrite model files), ``lint`` (explain layer orders the seed answers
advise against), ``inspect`` (what is in a model and where each pass would act) and ``demo``
(convert the bundled seed U-Net). ``keras-rewrite COMMAND --help`` documents each.

How the pieces fit: arguments are parsed and checked here before this module imports Keras
(it imports it only inside the commands; ``import keras_rewrite`` itself still loads
TensorFlow today, which is most of what ``--help`` costs). `keras_rewrite.io` checks and
loads files and saves atomically; `keras_rewrite.api.rewrite_with_report` does the rewrite;
`keras_rewrite.dot` draws pictures. One `BatchReport` counts results and picks the exit
status, like black's ``Report``. Every error is one line on stderr,
``keras-rewrite: error: <file or argument>: <what is wrong, expected, received>``, with a
traceback only under ``--verbose``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import pathlib
import sys
import time
import traceback

PROG = "keras-rewrite"

# Exit statuses: a documented contract (the README copies this table).
EXIT_OK = 0  # success; lint found nothing
EXIT_FINDINGS = 1  # lint found something; or, with several inputs, at least one failed
EXIT_USAGE = 2  # bad command line: unknown option, invalid value, bad --passes file
EXIT_INPUT = 3  # an input is missing, unreadable, not a Keras model, refused, failed to load
EXIT_REWRITE = 4  # a pass or the rebuild failed, or anything unexpected while rewriting
EXIT_OUTPUT = 5  # the output could not be written (exists, folder, reload check, unexpected)
EXIT_INTERRUPTED = 130  # Ctrl-C; no partial output is left

EXIT_CODES_HELP = f"""\
exit status:
  {EXIT_OK}  success (lint: no findings)
  {EXIT_FINDINGS}  lint found something; or, with several inputs, at least one input failed
     (each failure is an error line on stderr, and the summary counts them)
  {EXIT_USAGE}  usage error: unknown option, invalid value, unreadable --passes file
  {EXIT_INPUT}  an input is missing, unreadable, not a Keras model, or refused by safe mode;
     or loading it failed unexpectedly
  {EXIT_REWRITE}  the rewrite failed (a pass or the rebuild; e.g. a pattern matching no layer),
     or reading the model's graph, rewriting or predicting failed unexpectedly
  {EXIT_OUTPUT}  the output could not be written (exists without --force, folder missing or
     not writable, the written file did not reload as the rewritten model: layers,
     regularizers, dtype policies, weights or predictions differ), or writing failed
     unexpectedly; nothing was left behind
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); nothing was left behind
"""

PASS_ORDER_HELP = """\
passes run in this order: those of --passes FILE.toml (in the file's order), then --l2 /
--l2-layer, --spatial-dropout, --reorder. Without any pass option the output is an exact copy.
"""

OUTPUTS_HELP = """\
outputs:
  one input      -o OUT.keras, or -o an existing folder
  several inputs, or a FOLDER as input (its *.keras and *.h5 files, sorted, not recursive):
                 -o is a folder, created if missing; each output keeps its input's name
                 with the suffix .keras (models/a.keras -> OUT/a.keras, b.h5 -> OUT/b.keras);
                 one line per input, then a summary; one bad input does not stop the others
  --in-place     each input is replaced (through a checked temporary file)
  --dry-run      nothing is written (without -o; with -o, the outputs are only planned)
"""

DEFAULT_REORDER = "bn,act,pool,drop"
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
DEMO_OUTPUT = "seed_unet.rewritten.keras"
BATCH_SIZE = 2  # the output check compares predictions on one random batch of this size


class UsageError(Exception):
    """The command line is wrong; exit status EXIT_USAGE."""


class Failure(Exception):
    """One input could not be processed. `code` is its exit status, `message` one line."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- argument values


def coefficient(text: str) -> float:
    """An L2 coefficient from the command line: a finite number >= 0.

    >>> coefficient("1e-4")
    0.0001
    >>> coefficient("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a finite number >= 0 such as 1e-4; received '-1'
    """
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a finite number >= 0 such as 1e-4; received {text!r}")
    return value


def layer_coefficient(text: str) -> tuple[str, float]:
    """A ``--l2-layer`` value ``GLOB=COEF`` as (glob, coefficient).

    >>> layer_coefficient("conv2d*=1e-5")
    ('conv2d*', 1e-05)
    """
    pattern, sep, number = text.rpartition("=")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"expected GLOB=COEF such as 'conv2d*=1e-5'; received {text!r} (no '=')")
    if not pattern:
        raise argparse.ArgumentTypeError(
            f"expected GLOB=COEF such as 'conv2d*=1e-5'; received {text!r} (empty layer "
            "name or pattern before '=')")
    try:
        return pattern, coefficient(number)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected GLOB=COEF with COEF a finite number >= 0, such as 'conv2d*=1e-5'; "
            f"received {text!r}") from None


def reorder_order(text: str) -> tuple[str, ...]:
    """A ``--reorder`` ORDER such as ``bn,act,pool,drop`` as a tuple of keys.

    Which keys exist is checked by `ReorderBlocks` itself; here only the shape of the value,
    and the common slip of ``--reorder model.keras`` (argparse takes the file as ORDER).
    """
    if text.lower().endswith(MODEL_SUFFIXES) or os.path.sep in text:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated keys such as {DEFAULT_REORDER!r}; received {text!r}, "
            f"which looks like a model file: write --reorder={DEFAULT_REORDER} or put "
            "--reorder after the input files")
    keys = tuple(k.strip() for k in text.split(","))
    if not all(keys):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated keys such as {DEFAULT_REORDER!r}; received {text!r} "
            "(an empty key)")
    return keys


# --------------------------------------------------------------------------- pass plans


@dataclasses.dataclass
class PassSpec:
    """A pass to build: its short name, its settings, and where it was asked for."""

    name: str
    settings: dict
    origin: str  # "--l2", "passes.toml: pass 2" ... for error messages


def load_pass_file(path) -> list[PassSpec]:
    """The passes of a TOML file, in order. Each ``[[pass]]`` table has a ``name`` (a short
    pass name) and that pass's settings::

        [[pass]]
        name = "l2"
        factor = 1e-4
        [pass.per_layer]
        "conv2d*" = 1e-5

        [[pass]]
        name = "reorder"
        order = "bn,act,pool,drop"    # or ["bn", "act", "pool", "drop"]

    Raises:
        UsageError: the file is missing or not TOML, or a table is malformed.
    """
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"--passes {path}: no such file; expected a TOML file of [[pass]] "
                         "tables") from None
    except IsADirectoryError:
        raise UsageError(f"--passes {path}: is a folder; expected a TOML file") from None
    except OSError as exc:
        raise UsageError(f"--passes {path}: cannot be read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--passes {path}: not valid TOML: {exc}") from None
    tables = data.get("pass")
    extra = sorted(set(data) - {"pass"})
    if extra:
        raise UsageError(f"--passes {path}: unknown top-level key(s) {extra}; expected only "
                         "[[pass]] tables")
    if not isinstance(tables, list) or not tables:
        raise UsageError(f"--passes {path}: expected at least one [[pass]] table with a name; "
                         f"received {'no [[pass]] table' if tables is None else repr(tables)}")
    specs = []
    for i, table in enumerate(tables, 1):
        origin = f"--passes {path}: pass {i}"
        settings = dict(table)
        name = settings.pop("name", None)
        if not isinstance(name, str):
            raise UsageError(f"{origin}: expected name = one of {_short_names()}; received "
                             f"{'no name' if name is None else repr(name)}")
        if name == "reorder" and isinstance(settings.get("order"), str):
            try:
                settings["order"] = reorder_order(settings["order"])
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"{origin} ({name}): order: {exc}") from None
        specs.append(PassSpec(name, settings, f"{origin} ({name})"))
    return specs


def pass_specs_from_args(args) -> list[PassSpec]:
    """The pass plan the command-line options ask for, in the documented order."""
    specs = load_pass_file(args.passes) if getattr(args, "passes", None) else []
    if args.l2 is not None or args.l2_layer:
        settings = {} if args.l2 is None else {"factor": args.l2}
        if args.l2_layer:
            per_layer = {}
            for pattern, value in args.l2_layer:
                if pattern in per_layer and per_layer[pattern] != value:
                    raise UsageError(f"argument --l2-layer: {pattern!r} is given twice with "
                                     f"different coefficients ({per_layer[pattern]} and "
                                     f"{value}); expected each pattern once")
                per_layer[pattern] = value
            settings["per_layer"] = per_layer
        specs.append(PassSpec("l2", settings, "--l2/--l2-layer"))
    if args.spatial_dropout:
        specs.append(PassSpec("spatial_dropout", {}, "--spatial-dropout"))
    if args.reorder is not None:
        specs.append(PassSpec("reorder", {"order": args.reorder}, "--reorder"))
    return specs


def _short_names() -> list[str]:
    from .passes import SHORT_NAMES

    return sorted(SHORT_NAMES)


def build_passes(specs: list[PassSpec]) -> list:
    """Fresh pass objects for `specs`; a misconfiguration is a UsageError naming its origin."""
    import inspect

    from . import passes as passes_module
    from .errors import PassError

    built = []
    for spec in specs:
        class_name = passes_module.SHORT_NAMES.get(spec.name)
        if class_name is None:
            raise UsageError(f"{spec.origin}: unknown pass {spec.name!r}; expected one of "
                             f"{sorted(passes_module.SHORT_NAMES)}")
        cls = getattr(passes_module, class_name)
        accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(spec.settings) - set(accepted))
        if unknown:
            raise UsageError(f"{spec.origin}: unknown setting(s) {unknown}; expected some of "
                             f"{accepted}")
        try:
            built.append(cls(**spec.settings))
        except (PassError, TypeError, ValueError) as exc:
            raise UsageError(f"{spec.origin}: {exc}") from None
    return built


# --------------------------------------------------------------------------- inputs, outputs


@dataclasses.dataclass
class Job:
    """One input to convert and where its output goes (None: nothing is written)."""

    source: str
    output: str | None
    label: str = ""  # how to name the input in messages

    def __post_init__(self):
        self.label = self.label or self.source


def expand_inputs(paths: list[str]) -> tuple[list[str], bool]:
    """Input files in order, folders replaced by their model files (sorted, not recursive).

    Returns (files, batch) where `batch` says the output must be a folder: several inputs or
    a folder among them. A missing path stays in the list: it fails on its own, with exit
    status EXIT_INPUT, without stopping the others.
    """
    files, batch = [], len(paths) > 1
    for path in paths:
        p = pathlib.Path(path)
        if p.is_dir():
            batch = True
            found = sorted(str(c) for c in p.iterdir()
                           if c.suffix.lower() in MODEL_SUFFIXES and c.is_file())
            if not found:
                raise Failure(EXIT_INPUT, f"{path}: is a folder with no model files; expected "
                                          f"files ending in {', '.join(MODEL_SUFFIXES)}")
            files.extend(found)
        else:
            files.append(path)
    return files, batch


def plan_jobs(files: list[str], batch: bool, output: str | None, *, in_place: bool,
              dry_run: bool) -> list[Job]:
    """Where each input's output goes.

    - ``--in-place``: over the input (through a temporary file; only .keras inputs).
    - one input and ``-o OUT.keras``: OUT.keras.
    - several inputs, a folder input, or ``-o`` naming an existing folder (or ending in
      ``/``): ``-o`` is a folder and each output keeps its input's name with the suffix
      .keras (``models/a.keras -> out/a.keras``, ``b.h5 -> out/b.keras``).
    - ``--dry-run`` without ``-o``: nothing is written.
    """
    if in_place and output is not None:
        raise UsageError("--in-place and -o/--output exclude each other; expected one of them")
    if in_place:
        legacy = [f for f in files if not f.lower().endswith(".keras")]
        if legacy:
            raise UsageError(f"--in-place: {legacy[0]} is not a .keras file and cannot be "
                             "replaced by one; expected .keras inputs (use -o for others)")
        return [Job(f, f) for f in files]
    if output is None:
        if dry_run:
            return [Job(f, None) for f in files]
        raise UsageError("convert needs -o OUT (a .keras file, or a folder for several "
                         "inputs), --in-place, or --dry-run")
    as_folder = batch or pathlib.Path(output).is_dir() or output.endswith(("/", os.sep))
    if not as_folder:
        if not output.endswith(".keras"):
            raise UsageError(f"-o {output}: expected a file name ending in .keras (the only "
                             "format Keras saves), or an existing folder")
        return [Job(files[0], output)]
    jobs, seen = [], {}
    for f in files:
        target = str(pathlib.Path(output) / (pathlib.Path(f).stem + ".keras"))
        if target in seen:
            raise UsageError(f"-o {output}: inputs {seen[target]} and {f} would both be "
                             f"written to {target}; expected inputs with distinct names")
        seen[target] = f
        jobs.append(Job(f, target))
    return jobs


def prepare_output_folder(output: str, dry_run: bool) -> None:
    """Create the -o folder of a batch if needed and prove it is writable (by writing a
    probe file: as root, permission bits say nothing about read-only file systems).

    Raises:
        Failure: EXIT_OUTPUT, the folder cannot be used; no input is worth converting then.
    """
    import tempfile

    folder = pathlib.Path(output)
    if folder.exists() and not folder.is_dir():
        raise Failure(EXIT_OUTPUT, f"{output}: is a file; expected a folder for the outputs "
                                   "of several inputs")
    if dry_run:
        return
    if not folder.exists():
        if not folder.parent.is_dir():
            raise Failure(EXIT_OUTPUT, f"{output}: its parent folder {str(folder.parent)!r} "
                                       "does not exist; expected an existing folder")
        try:
            folder.mkdir()
        except OSError as exc:
            raise Failure(EXIT_OUTPUT, f"{output}: cannot create the output folder: "
                                       f"{exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".keras-rewrite-probe."):
            pass
    except OSError as exc:
        raise Failure(EXIT_OUTPUT, f"{output}: the output folder is not writable: "
                                   f"{exc.strerror or exc}") from None


# --------------------------------------------------------------------------- reporting


class BatchReport:
    """Counts results and picks the exit status (like black's Report)."""

    def __init__(self, total: int, out=None, err=None):
        self.total = total
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.done = 0
        self.failed: list[tuple[str, int]] = []
        self.progress = Progress(self.err)

    @property
    def batch(self) -> bool:
        return self.total > 1

    def prefix(self, index: int) -> str:
        return f"[{index}/{self.total}] " if self.batch else ""

    def success(self, index: int, line: str) -> None:
        self.done += 1
        self.progress.clear()
        print(f"{self.prefix(index)}{line}", file=self.out, flush=True)

    def failure(self, index: int, label: str, failure: Failure) -> None:
        self.failed.append((label, failure.code))
        self.progress.clear()
        if self.batch:
            print(f"{self.prefix(index)}{label}: failed (exit status {failure.code}, see the "
                  "error on stderr)", file=self.out, flush=True)
        print(error_line(failure.message), file=self.err, flush=True)

    def exit_status(self) -> int:
        if not self.failed:
            return EXIT_OK
        if not self.batch:
            return self.failed[0][1]
        return EXIT_FINDINGS

    def summary(self, verb: str = "converted") -> str:
        return f"{self.done} {verb}, {len(self.failed)} failed of {_plural(self.total, 'input')}"


class Progress:
    """A one-line "[i/n] file" indicator on stderr, only when stderr is a terminal."""

    def __init__(self, stream):
        self.stream = stream
        self.active = False
        try:
            self.enabled = stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False

    def show(self, index: int, total: int, label: str) -> None:
        if not self.enabled or total < 2:
            return
        self.stream.write(f"\r\x1b[K[{index}/{total}] {label} ...")
        self.stream.flush()
        self.active = True

    def clear(self) -> None:
        if self.active:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.active = False


def error_line(message: str) -> str:
    """``keras-rewrite: error: MESSAGE`` on one line, whatever MESSAGE holds."""
    return f"{PROG}: error: {' '.join(str(message).split())}"


def _fmt_diff(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}"


def describe_outputs(report, diff: float, batch: int) -> tuple[str, str]:
    """Whether inference outputs changed, as (a few words, a sentence): the passes' own
    verdict (`Report.outputs_unchanged`) and the largest absolute difference measured
    between the original and the rewritten model on a random batch."""
    measured = f"largest absolute difference on a random batch of {batch}: {_fmt_diff(diff)}"
    verdict = report.outputs_unchanged
    changing = [p.pass_name for p in report.passes if p.modified and p.outputs_unchanged is False]
    if verdict is False:
        short = f"changed by {', '.join(changing)}"
        return short, f"{short}, as the pass reports (fine-tune the model); {measured}"
    if verdict is None:
        return "not proven unchanged", f"not proven unchanged by the passes; {measured}"
    if diff == 0:
        return "unchanged", f"unchanged ({measured})"
    return "unchanged up to rounding", f"unchanged up to float rounding ({measured})"


# --------------------------------------------------------------------------- the commands


@dataclasses.dataclass
class Session:
    """Options shared by the subcommands that load models."""

    unsafe: bool = False
    verbose: bool = False

    @property
    def safe_mode(self) -> bool:
        return not self.unsafe


def _load(session: Session, path: str):
    from . import io

    try:
        return io.load_model(path, safe_mode=session.safe_mode)
    except io.ModelFileError as exc:
        raise Failure(EXIT_INPUT, str(exc)) from exc
    except Exception as exc:  # a bug of ours or a Keras surprise: still one line, status 3
        raise Failure(EXIT_INPUT, unexpected(path, "while loading", exc)) from exc


def unexpected(label: str, step: str, exc: BaseException) -> str:
    """One line for an exception nobody raised on purpose: the file, the step, the layer
    where known, the first paragraph of the message, and what to do."""
    from .io import first_paragraph, layer_in_traceback

    return (f"{label}: unexpected {type(exc).__name__} {step}{layer_in_traceback(exc)}: "
            f"{first_paragraph(exc)}; rerun with --verbose and report it")


def _convert_one(session: Session, job: Job, specs, args, batch: bool) -> str:
    """Convert one input: print its full report unless in a batch; return its result line.

    Raises:
        Failure: with the exit status of the step that failed: loading 3, rewriting (and
            predicting on the random batch) 4, writing and the reload check 5.
    """
    from . import dot, io
    from .api import rewrite_with_report
    from .errors import RewriteError
    from .graph import to_graph
    from .verify import max_abs_difference, predict

    if job.output is not None and not args.dry_run:
        try:  # fail before the slow part
            io.check_output_path(job.output, overwrite=args.force or args.in_place,
                                 input_paths=[] if args.in_place else [job.source])
        except io.OutputError as exc:
            raise Failure(EXIT_OUTPUT, str(exc)) from exc
    model = _load(session, job.source)
    passes = build_passes(specs)
    try:
        result = rewrite_with_report(model, passes)
    except RewriteError as exc:
        raise Failure(EXIT_REWRITE, f"{job.label}: rewrite failed: {exc}") from exc
    except Exception as exc:  # a bug somewhere: still one line, and the input is untouched
        raise Failure(EXIT_REWRITE, unexpected(job.label, "while rewriting", exc)) from exc
    report, new_model = result.report, result.model
    try:
        x, original_outputs = io.sample_batch(model, batch=BATCH_SIZE)
    except Exception as exc:
        raise Failure(EXIT_REWRITE, unexpected(
            job.label, "while predicting the input model on a random batch", exc)) from exc
    try:
        expected = predict(new_model, x)
    except Exception as exc:
        raise Failure(EXIT_REWRITE, unexpected(
            job.label, "while predicting the rewritten model on a random batch", exc)) from exc
    diff = max_abs_difference(original_outputs, expected)

    picture = None
    if args.diff_svg:
        try:
            text = dot.to_dot(to_graph(new_model), before=to_graph(model),
                              title=f"{job.label} -> {job.output or '(dry run)'}")
            picture = dot.write_picture(text, args.diff_svg)
        except dot.PictureError as exc:
            raise Failure(EXIT_OUTPUT, str(exc)) from exc
        except Exception as exc:
            raise Failure(EXIT_OUTPUT, unexpected(args.diff_svg, "while drawing", exc)) from exc

    written = None
    if job.output is not None and not args.dry_run:
        try:
            io.save_model(new_model, job.output, overwrite=args.force or args.in_place,
                          verify=lambda tmp: check_written(tmp, job.output, new_model, x,
                                                           expected, session))
        except io.OutputError as exc:
            raise Failure(EXIT_OUTPUT, str(exc)) from exc
        except Exception as exc:  # save_model has removed the temporary file
            raise Failure(EXIT_OUTPUT, unexpected(job.output, "while writing or reloading",
                                                  exc)) from exc
        written = job.output

    changed = sorted({layer for p in report.passes for layer in p.changed_layers})
    outputs_short, outputs = describe_outputs(report, diff, BATCH_SIZE)
    if not batch or session.verbose:
        _print_convert_report(job, report, model, new_model, outputs, written, picture,
                              args, session)
    where = written or "(not written: dry run)"
    return (f"{job.label} -> {where}: {_plural(len(changed), 'layer')} changed; weights "
            f"{report.weights_carried} carried over, {report.weights_new} re-initialized, "
            f"{report.weights_dropped} dropped; outputs {outputs_short} (max |diff| "
            f"{_fmt_diff(diff)})")


# What a reload check's first difference means, by its kind (see verify.Difference).
RELOAD_PROBLEMS = {
    "layers": "the written file would reload without the rewrite",
    "config": "the written file would reload without the rewrite",
    "weights": "the written file reloads with other weights",
}


def check_written(tmp: str, output: str, new_model, x, expected, session: Session) -> None:
    """The reload check of a written file: load it once and compare it with the rewritten
    model (layers, regularizers at any depth, dtype policies, activations, weight hashes) and
    its predictions on `x` with `expected`, computed before.

    Raises:
        OutputError: the file does not reload, or reloads as another model; one line naming
            the layer and what was lost.
    """
    from . import io, verify

    try:
        reloaded = io.load_model(tmp, safe_mode=session.safe_mode)
    except io.ModelFileError as exc:
        raise io.OutputError(output, f"the written file does not reload: {exc.reason}") from exc
    comparison = verify.compare_models(new_model, reloaded, x, expected)
    if comparison:
        return
    first = comparison.differences[0]
    if first.kind == "predictions":
        raise io.OutputError(output, "the written file reloads with different predictions "
                                     "(largest absolute difference "
                                     f"{_fmt_diff(comparison.max_abs_difference)}); not written")
    raise io.OutputError(output, comparison.message(RELOAD_PROBLEMS[first.kind])
                         + "; not written")


def _print_convert_report(job, report, model, new_model, outputs, written, picture, args,
                          session) -> None:
    out = sys.stdout
    print(f"{job.label} -> {job.output or '(dry run: nothing written)'}", file=out)
    if not report.passes:
        print("no passes given: the output is an exact copy", file=out)
    print(report_text(report, session.verbose), file=out)
    shapes = ", ".join(str(tuple(t.shape)) for t in new_model.outputs)
    print(f"shape check: passed, output shapes {shapes} as before", file=out)
    print(f"inference outputs: {outputs}", file=out)
    if _optimizer_steps(model):
        print("note: the optimizer's state (moments, step count) is not carried over; the "
              "new model has a fresh optimizer of the same configuration", file=out)
    if picture is not None:
        print(f"picture: {picture.note}", file=out)
    if written:
        print(f"wrote {written} (reloaded and checked: same layers, regularizers, weights and "
              "predictions)", file=out)
    elif args.dry_run:
        print("dry run: nothing written", file=out)


def report_text(report, verbose: bool) -> str:
    """`Report.table`: every layer when verbose, else only layers with re-initialized or
    dropped weights (and no empty table header when there are none)."""
    text = report.table(only_changed=not verbose)
    if not verbose and not any(lw.new or lw.dropped for lw in report.layers.values()):
        text = "\n".join(text.splitlines()[2:])  # the header and its rule
    return text


def _optimizer_steps(model) -> int:
    optimizer = getattr(model, "optimizer", None)
    try:
        return int(optimizer.iterations.numpy()) if optimizer is not None else 0
    except Exception:  # an unbuilt optimizer has no iterations variable yet
        return 0


def cmd_convert(args, session: Session) -> int:
    specs = pass_specs_from_args(args)
    try:
        files, batch = expand_inputs(args.inputs)
    except Failure as failure:
        print(error_line(failure.message), file=sys.stderr)
        return failure.code
    if args.diff_svg and len(files) > 1:
        raise UsageError("--diff-svg draws one model; expected a single input file")
    jobs = plan_jobs(files, batch, args.output, in_place=args.in_place, dry_run=args.dry_run)
    if batch and args.output is not None:
        try:
            prepare_output_folder(args.output, args.dry_run)
        except Failure as failure:
            print(error_line(failure.message), file=sys.stderr)
            return failure.code
    build_passes(specs)  # misconfigured passes are a usage error before any file is read
    return run_jobs(session, jobs, specs, args)


def run_jobs(session: Session, jobs: list[Job], specs, args) -> int:
    batch = len(jobs) > 1
    report = BatchReport(len(jobs))
    started = time.perf_counter()
    for index, job in enumerate(jobs, 1):
        report.progress.show(index, len(jobs), job.label)
        try:
            line = _convert_one(session, job, specs, args, batch)
        except Failure as failure:
            report.failure(index, job.label, failure)
            if session.verbose:
                traceback.print_exc()
            continue
        except (UsageError, BrokenPipeError):
            raise
        except Exception as exc:  # keep the batch going; the message says it is unexpected
            failure = Failure(EXIT_REWRITE, unexpected(job.label, "while converting", exc))
            report.failure(index, job.label, failure)
            if session.verbose:
                traceback.print_exc()
            continue
        if batch:
            report.success(index, line)
        else:
            report.done += 1
    if batch:
        verb = "rewritten (dry run, nothing written)" if args.dry_run else "converted"
        print(f"{report.summary(verb)} in {time.perf_counter() - started:.1f} s")
    return report.exit_status()


def cmd_demo(args, session: Session) -> int:
    from importlib import resources

    bundled = resources.files("keras_rewrite") / "data" / "seed_unet.keras"
    with resources.as_file(bundled) as path:
        specs = [PassSpec("l2", {}, "demo"), PassSpec("spatial_dropout", {}, "demo"),
                 PassSpec("reorder", {}, "demo")]
        output = args.output or DEMO_OUTPUT
        if not output.endswith(".keras"):
            raise UsageError(f"-o {output}: expected a file name ending in .keras")
        args.dry_run, args.in_place = False, False
        job = Job(str(path), output, label="seed_unet.keras (bundled seed U-Net)")
        print("demo: the seed U-Net of 'Where do I add kernel_regularizer in a U-Net?', "
              "converted with the passes l2, spatial_dropout and reorder\n")
        return run_jobs(session, [job], specs, args)


# How to run the pass a lint finding names (Finding.fixed_by is a short pass name).
FIX_OPTIONS = {"l2": "--l2 1e-4", "spatial_dropout": "--spatial-dropout", "reorder": "--reorder"}


def cmd_lint(args, session: Session) -> int:
    from .errors import RewriteError
    from .lint import lint

    try:
        model = _load(session, args.input)
    except Failure as failure:
        print(error_line(failure.message), file=sys.stderr)
        return failure.code
    try:
        findings = lint(model)
    except RewriteError as exc:  # e.g. a subclassed model: no graph to lint
        print(error_line(f"{args.input}: {exc}"), file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # e.g. a layer whose get_config() raises: one line, status 4
        if session.verbose:
            traceback.print_exc()
        print(error_line(unexpected(args.input, "while reading the model's graph", exc)),
              file=sys.stderr)
        return EXIT_REWRITE
    if not findings:
        print(f"{args.input}: no findings")
        return EXIT_OK
    print(f"{args.input}: {len(findings)} finding{'s' if len(findings) != 1 else ''}")
    for finding in findings:
        option = FIX_OPTIONS.get(finding.fixed_by, f"--passes (pass {finding.fixed_by!r})")
        fix = (f"fixed by: keras-rewrite convert {option}" if finding.fixed_by
               else "no pass fixes it: it needs a design change")
        print(f"\n[{finding.rule}] {', '.join(finding.layers)}")
        print(f"  {fix}")
        if session.verbose or not args.brief:
            print(_indent(finding.explanation, "  "))
    return EXIT_FINDINGS


def cmd_inspect(args, session: Session) -> int:
    from . import dot
    from .errors import RewriteError
    from .graph import iter_graphs, to_graph
    from .passes.base import pass_name, run_passes

    specs = pass_specs_from_args(args)
    if not specs:
        specs = [PassSpec(name, {}, "inspect") for name in ("l2", "spatial_dropout", "reorder")]
    build_passes(specs)
    try:
        model = _load(session, args.input)
    except Failure as failure:
        print(error_line(failure.message), file=sys.stderr)
        return failure.code
    try:
        graph = to_graph(model)
    except RewriteError as exc:
        print(error_line(f"{args.input}: {exc}"), file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # e.g. a layer whose get_config() raises: one line, status 4
        if session.verbose:
            traceback.print_exc()
        print(error_line(unexpected(args.input, "while reading the model's graph", exc)),
              file=sys.stderr)
        return EXIT_REWRITE
    graphs = list(iter_graphs(graph))
    counts = {}
    for g in graphs:
        for _, data in g.nodes(data=True):
            if data["kind"] in ("layer", "op", "input") and data["spec"].subgraph is None:
                counts[data["spec"].class_name] = counts.get(data["spec"].class_name, 0) + 1
    total = sum(counts.values())
    print(f"{args.input}: {graph.graph['model_class']} model {graph.graph['name']!r}, "
          f"{total} layer calls")
    print(f"inputs: {', '.join(str(tuple(t.shape)) for t in model.inputs)}; outputs: "
          f"{', '.join(str(tuple(t.shape)) for t in model.outputs)}; "
          f"{model.count_params():,} parameters")
    print("\nlayers by class:")
    width = max(map(len, counts), default=0)
    for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {name.ljust(width)}  {count}")
    nested = [(g.graph["name"], g.graph["model_class"], g.number_of_nodes()) for g in graphs[1:]]
    print("\nnested models: " + (", ".join(f"{n} ({c}, {k} nodes)" for n, c, k in nested)
                                 if nested else "none"))
    print("\nwhere each pass would act (passes run on the graph only; nothing rebuilt):")
    for spec, p in zip(specs, build_passes(specs)):
        fresh = to_graph(model)
        label = f"{spec.name} ({pass_name(p)})"
        try:
            (result,) = run_passes(fresh, [p])
        except RewriteError as exc:
            print(f"  {label}: would fail: {exc}")
            continue
        changed = result.changed_layers
        if not changed:
            print(f"  {label}: nothing to change"
                  + (f" ({len(result.skipped)} layers skipped)" if result.skipped else ""))
            continue
        print(f"  {label}: {_plural(len(changed), 'layer')}: {_shorten(changed)}")
        if len(changed) <= 3 and not session.verbose:  # few: say what would happen there
            for c in result.changes:
                if c.action != "skipped":
                    print(f"    {c.layer}: {c.action}"
                          + (f" ({c.detail.split(';')[0]})" if c.detail else ""))
        if session.verbose:
            for c in result.changes:
                print(f"    {c.layer}: {c.action}{' - ' + c.detail if c.detail else ''}")
    if args.svg:
        try:
            picture = dot.write_picture(dot.to_dot(graph, title=args.input), args.svg)
        except dot.PictureError as exc:
            print(error_line(str(exc)), file=sys.stderr)
            return EXIT_OUTPUT
        print(f"\npicture: {picture.note}")
    return EXIT_OK


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _shorten(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _indent(text: str, prefix: str, width: int = 92) -> str:
    import textwrap

    return textwrap.fill(text, width=width, initial_indent=prefix, subsequent_indent=prefix)


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (UsageError) instead of usage + message."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_load_options(parser) -> None:
    group = parser.add_argument_group("loading")
    group.add_argument("--unsafe", action="store_true",
                       help="load with safe_mode=False: allow Lambda layers stored as Python "
                            "bytecode and legacy .h5 files. Only for files you trust: loading "
                            "them can run code")
    group.add_argument("--custom-objects", metavar="MODULE", action="append", default=[],
                       help="import MODULE (a dotted name, or a path to a .py file) before "
                            "loading, so that the custom layers it registers with "
                            "keras.saving.register_keras_serializable can be loaded; repeatable")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="full tables, Keras warnings, and tracebacks on errors")


def _add_pass_options(parser) -> None:
    group = parser.add_argument_group("passes", PASS_ORDER_HELP.rstrip())
    group.add_argument("--l2", type=coefficient, metavar="COEF",
                       help="add L2(COEF) weight decay to every weight kernel (e.g. 1e-4); "
                            "--l2 0 with --l2-layer: only the layers named there")
    group.add_argument("--l2-layer", type=layer_coefficient, action="append", default=[],
                       metavar="GLOB=COEF",
                       help="coefficient for the layers whose name matches GLOB (fnmatch, "
                            "e.g. 'conv2d*=1e-5'; 0 leaves them alone); repeatable; implies "
                            "the l2 pass, with --l2 (default 1e-4) for the other layers. A "
                            "pattern matching no layer is an error")
    group.add_argument("--spatial-dropout", action="store_true",
                       help="replace Dropout on feature maps with SpatialDropout1D/2D/3D")
    group.add_argument("--reorder", nargs="?", const=reorder_order(DEFAULT_REORDER),
                       type=reorder_order, metavar="ORDER",
                       help="reorder the layers after each conv/dense layer into ORDER "
                            f"(default {DEFAULT_REORDER}); keys: bn, act, pool, drop")
    group.add_argument("--passes", metavar="FILE.toml",
                       help="passes and their settings from a TOML file of [[pass]] tables "
                            "(name = \"l2\" | \"spatial_dropout\" | \"reorder\", then the "
                            "pass's arguments)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (no Keras needed to build or run it)."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog=PROG, formatter_class=formatter,
                     description=_para("Rewrite built Keras 3 models through a networkx graph, "
                                 "keeping their weights: add L2 regularization, swap Dropout "
                                 "for SpatialDropout, reorder Conv/BN/activation/pool/dropout "
                                 "blocks; lint and inspect model files."),
                     epilog=EXIT_CODES_HELP + "\nStart with: keras-rewrite demo")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    convert = sub.add_parser(
        "convert", formatter_class=formatter, help="rewrite model files",
        description=_para("Rewrite .keras model files with passes, print what changed (layers, "
                    "weights carried over or re-initialized, output shapes, inference "
                    "outputs on a random batch) and write the result atomically: a "
                    "temporary file in the destination folder, reloaded and checked, then "
                    "renamed. Inputs are never overwritten without --in-place, existing "
                    "outputs never without --force."),
        epilog=OUTPUTS_HELP + "\n" + EXIT_CODES_HELP)
    convert.add_argument("inputs", nargs="+", metavar="IN",
                         help="a .keras file or a folder of them")
    convert.add_argument("-o", "--output", metavar="OUT",
                         help="output file (one input) or folder (several inputs)")
    _add_pass_options(convert)
    group = convert.add_argument_group("writing")
    group.add_argument("--dry-run", action="store_true",
                       help="rewrite and report, write no model file")
    group.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    group.add_argument("--in-place", action="store_true",
                       help="replace each input by its rewritten model (atomically)")
    group.add_argument("--diff-svg", metavar="FILE",
                       help="draw the rewritten graph with changed, new, moved and removed "
                            "layers marked (.svg/.png via Graphviz 'dot', or .dot)")
    _add_load_options(convert)

    lint_parser = sub.add_parser(
        "lint", formatter_class=formatter, help="explain problems in a model's layer order",
        description=_para("Lint a model: layer orders and settings that the seed answers advise "
                    "against, each explained, with the pass that fixes it."),
        epilog=f"exit status: {EXIT_OK} no findings, {EXIT_FINDINGS} findings, {EXIT_USAGE} "
               f"usage error, {EXIT_INPUT} input unreadable or invalid, {EXIT_REWRITE} the "
               "model's graph could not be read (unexpected error)")
    lint_parser.add_argument("input", metavar="IN", help="a .keras file")
    lint_parser.add_argument("--brief", action="store_true",
                             help="one line per finding, without the explanation")
    _add_load_options(lint_parser)

    inspect_parser = sub.add_parser(
        "inspect", formatter_class=formatter,
        help="summarize a model and where each pass would act",
        description=_para("Summarize a model file: layer calls by class, nested models, and where "
                    "each pass would act (the passes run on the graph only; nothing is "
                    "rebuilt or written). Without pass options, all three passes with their "
                    "defaults."),
        epilog=f"exit status: {EXIT_OK} success, {EXIT_USAGE} usage error, {EXIT_INPUT} input "
               f"unreadable or invalid, {EXIT_REWRITE} the model's graph could not be read "
               f"(unexpected error), {EXIT_OUTPUT} picture not written")
    inspect_parser.add_argument("input", metavar="IN", help="a .keras file")
    inspect_parser.add_argument("--svg", metavar="FILE",
                                help="draw the graph (.svg/.png via Graphviz 'dot', or .dot)")
    _add_pass_options(inspect_parser)
    _add_load_options(inspect_parser)

    demo = sub.add_parser(
        "demo", formatter_class=formatter,
        help="convert the bundled seed U-Net with all three passes",
        description=_para("Convert the bundled seed U-Net (keras_rewrite/data/seed_unet.keras, "
                    "64x64x3, random weights) with the passes l2, spatial_dropout and reorder, "
                    f"print the report and write ./{DEMO_OUTPUT}."),
        epilog=EXIT_CODES_HELP)
    demo.add_argument("-o", "--output", metavar="OUT",
                      help=f"where to write the result (default ./{DEMO_OUTPUT})")
    demo.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    demo.add_argument("--diff-svg", metavar="FILE", help="draw what changed")
    demo.add_argument("-v", "--verbose", action="store_true",
                      help="full tables, Keras warnings, and tracebacks on errors")
    return parser


def _para(text: str) -> str:
    """A paragraph wrapped for the terminal (RawDescriptionHelpFormatter keeps the epilog's
    tables as written, so it does not wrap descriptions either)."""
    import textwrap

    return textwrap.fill(text, width=88)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("keras-rewrite")
    except metadata.PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def _full_tracebacks():
    """Keras's traceback filtering off while a command runs: it drops Keras's own frames, and
    with them the layer an unexpected error happened in (`io.layer_in_traceback`)."""
    import keras

    was_on = keras.config.is_traceback_filtering_enabled()
    keras.config.disable_traceback_filtering()
    try:
        yield
    finally:
        if was_on:
            keras.config.enable_traceback_filtering()


COMMANDS = {"convert": cmd_convert, "lint": cmd_lint, "inspect": cmd_inspect, "demo": cmd_demo}


def main(argv=None) -> int:
    """Run the command line; return the exit status (see EXIT_CODES_HELP)."""
    parser = build_parser()
    given = sys.argv[1:] if argv is None else list(argv)
    verbose = "-v" in given or "--verbose" in given  # known even if parsing fails
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        session = Session(unsafe=getattr(args, "unsafe", False), verbose=args.verbose)
        import warnings

        with warnings.catch_warnings(), _full_tracebacks():
            if not session.verbose:
                # Keras warns on load about optimizer variables it skips, compiled metrics
                # not built yet, ...: noise for this tool's users; --verbose shows them.
                warnings.simplefilter("ignore")
            for spec in getattr(args, "custom_objects", []):
                from .io import CustomObjectsError, import_custom_objects

                try:
                    import_custom_objects(spec)
                except CustomObjectsError as exc:
                    raise UsageError(str(exc)) from exc
            return COMMANDS[args.command](args, session)
    except UsageError as exc:
        if verbose:
            traceback.print_exc()
        print(error_line(str(exc)), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted; no partial output was left", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except BrokenPipeError:  # `keras-rewrite inspect m.keras | head` closed our stdout
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13  # what a process killed by SIGPIPE reports
    except Exception as exc:  # a bug: still one line (the traceback with --verbose)
        if verbose:
            traceback.print_exc()
        from .io import first_paragraph, layer_in_traceback

        print(error_line(f"unexpected {type(exc).__name__}{layer_in_traceback(exc)}: "
                         f"{first_paragraph(exc)} (this is a bug in {PROG}; rerun with "
                         "--verbose and report it)"), file=sys.stderr)
        return EXIT_REWRITE


if __name__ == "__main__":
    sys.exit(main())
