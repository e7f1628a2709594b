"""Inputs, where their outputs go, and one run over them with one summary.

`expand_inputs` turns the command line's inputs into files, `plan_jobs` gives each its
output, `prepare_output_folder` makes a batch's output folder, and `BatchReport` counts
results and picks the exit status (like black's ``Report``): one bad input does not stop the
others. Nothing here imports Keras.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import sys

from keras_rewrite.cli.status import EXIT_FINDINGS, EXIT_INPUT, EXIT_OK, EXIT_OUTPUT, Failure, UsageError
from keras_rewrite.cli.terminal import Progress, error_line, json_line, plural

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclasses.dataclass
class Job:
    """One input to convert and where its output goes (None: nothing is written)."""

    source: str
    output: str | None
    label: str = ""  # how to name the input in messages
    picture: str | None = None  # where to draw what changed (--diff-svg), if anywhere

    def __post_init__(self):
        self.label = self.label or self.source


def expand_inputs(paths: list[str]) -> tuple[list[str], bool]:
    """Input files in order, folders replaced by their model files (sorted, not recursive).

    Returns (files, batch) where `batch` says the output must be a folder: several inputs or
    a folder among them. A missing path stays in the list: it fails on its own, with exit
    status EXIT_INPUT, without stopping the others.
    """
    from keras_rewrite.errors import show_path

    files, batch = [], len(paths) > 1
    for path in paths:
        p = pathlib.Path(path)
        if os.path.isdir(p):
            batch = True
            found = sorted(str(c) for c in p.iterdir()
                           if c.suffix.lower() in MODEL_SUFFIXES and c.is_file())
            if not found:
                raise Failure(EXIT_INPUT, f"{show_path(path)}: is a folder with no model files; "
                                          f"expected files ending in {', '.join(MODEL_SUFFIXES)}")
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
    as_folder = batch or os.path.isdir(output) or output.endswith(("/", os.sep))
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


class BatchReport:
    """Counts results and picks the exit status (like black's Report).

    With ``as_json``, stdout gets one JSON object per input (its report or its error) and
    nothing else."""

    def __init__(self, total: int, out=None, err=None, *, as_json: bool = False):
        self.total = total
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.as_json = as_json
        self.done = 0
        self.failed: list[tuple[str, int]] = []
        self.written: list[str] = []  # outputs complete on disk (named on interruption)
        self.progress = Progress(total, self.err)

    @property
    def batch(self) -> bool:
        return self.total > 1

    def prefix(self, index: int) -> str:
        return f"[{index}/{self.total}] " if self.batch else ""

    def success(self, index: int, line: str | None, record: dict | None = None) -> None:
        self.done += 1
        self.progress.clear()
        self.progress.finish_one()
        if self.as_json and record is not None:
            print(json_line(record), file=self.out, flush=True)
        elif line is not None:
            print(f"{self.prefix(index)}{line}", file=self.out, flush=True)

    def failure(self, index: int, label: str, failure: Failure) -> None:
        self.failed.append((label, failure.code))
        self.progress.clear()
        self.progress.finish_one()
        line = error_line(failure.message)
        if self.as_json:
            print(json_line({"source": label, "error": line.split(": error: ", 1)[1],
                             "exit_status": failure.code}), file=self.out, flush=True)
        elif self.batch:
            print(f"{self.prefix(index)}{label}: failed (exit status {failure.code}, see the "
                  "error on stderr)", file=self.out, flush=True)
        print(line, file=self.err, flush=True)

    def exit_status(self) -> int:
        if not self.failed:
            return EXIT_OK
        if not self.batch:
            return self.failed[0][1]
        return EXIT_FINDINGS

    def summary(self, verb: str = "converted") -> str:
        return f"{self.done} {verb}, {len(self.failed)} failed of {plural(self.total, 'input')}"
