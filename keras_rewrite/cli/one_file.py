"""What the commands do with one file: the `Session` options, loading it, checking and drawing
its diff picture, converting it (`convert_one`, also run in worker processes), and the one
line for an unexpected error."""
from __future__ import annotations

import dataclasses
import os
import sys
import time

from keras_rewrite.cli.batch import Job
from keras_rewrite.cli.pass_options import build_passes
from keras_rewrite.cli.status import EXIT_INPUT, EXIT_OUTPUT, STEP_STATUS, Failure
from keras_rewrite.cli.terminal import json_line, plural, report_lines


@dataclasses.dataclass
class Session:
    """Options shared by the subcommands that load models."""

    unsafe: bool = False
    verbose: bool = False
    as_json: bool = False
    limits: dict = dataclasses.field(default_factory=dict)  # the --max-* flags given

    @property
    def safe_mode(self) -> bool:
        return not self.unsafe

    def file_limits(self):
        """The `keras_rewrite.files.model_files.FileLimits` of the --max-* flags given."""
        from keras_rewrite.files.model_files import FileLimits

        return FileLimits(**self.limits)


def unexpected(label: str, step: str, exc: BaseException) -> str:
    """One line for an exception nobody raised on purpose (`errors.unexpected_text`)."""
    from keras_rewrite.errors import unexpected_text

    return unexpected_text(label, step, exc)


def load(session: Session, path: str):
    """Load a model file for lint and inspect; errors as `Failure` (exit status 3)."""
    from keras_rewrite.files.model_files import ModelFileError, load_model

    try:
        return load_model(path, safe_mode=session.safe_mode, limits=session.file_limits())
    except ModelFileError as exc:
        raise Failure(EXIT_INPUT, str(exc)) from exc
    except Exception as exc:  # a bug of ours or a Keras surprise: still one line, status 3
        raise Failure(EXIT_INPUT, unexpected(path, "while loading", exc)) from exc


def check_picture_path(path, force: bool) -> None:
    """Fail before the slow part when a picture cannot be written there."""
    from keras_rewrite.files.atomic_save import OutputError, check_output_path

    try:
        check_output_path(path, overwrite=force, suffixes=None)
    except OutputError as exc:
        raise Failure(EXIT_OUTPUT, str(exc)) from exc


def draw_diff_picture(before, after, path, force: bool, old_label: str, new_label: str,
                      *, diff=None, collapse: bool = True):
    """Draw what changed from model `before` to `after` (or `diff`, already computed) into
    `path`; return the `keras_rewrite.analysis.picture.Picture`.

    Raises:
        Failure: status 5, the picture could not be written.
    """
    from keras_rewrite.analysis import picture as drawing
    from keras_rewrite.files.atomic_save import OutputError
    from keras_rewrite.analysis.diff import diff_models

    try:
        if diff is None:
            diff = diff_models(before, after)
        return drawing.write_picture(
            drawing.draw_diff(diff, title=f"{old_label} -> {new_label}", collapse=collapse,
                              old_label=old_label, new_label=new_label),
            path, overwrite=force)
    except (drawing.PictureError, OutputError) as exc:
        raise Failure(EXIT_OUTPUT, str(exc)) from exc
    except Exception as exc:
        raise Failure(EXIT_OUTPUT, unexpected(path, "while drawing", exc)) from exc


# --------------------------------------------------------------------------- convert


def convert_one(session: Session, job: Job, specs, args, batch: bool, *, full: bool = False):
    """Convert one input with `keras_rewrite.convert_file`; print its full report unless in
    a batch (also in a batch when `full` or --verbose); return (its result line, its JSON
    record). ``job.picture`` names the picture of what changed, if one is wanted.

    Raises:
        Failure: with the exit status of the step that failed: loading 3, rewriting (and
            predicting on the random batch) 4, writing, drawing and the reload check 5.
    """
    from keras_rewrite.files.atomic_save import OutputError, check_output_path
    from keras_rewrite.conversion import ConversionError, convert_file, format_difference
    from keras_rewrite.files.model_files import ModelFileError

    write = job.output is not None and not args.dry_run
    if write:
        try:  # fail before the slow part; only --in-place replaces an input
            check_output_path(job.output, overwrite=args.force or args.in_place,
                              input_paths=[] if args.in_place else [job.source])
        except OutputError as exc:
            raise Failure(EXIT_OUTPUT, str(exc)) from exc
    passes = build_passes(specs)
    pictures = []

    def draw(original, rewritten):
        existed = os.path.lexists(job.picture)
        pictures.append((draw_diff_picture(original, rewritten, job.picture, args.force,
                                           job.label, job.output or "(dry run)"), existed))

    started = time.perf_counter()
    try:
        report = convert_file(job.source, job.output if write else None, passes,
                              safe_mode=session.safe_mode,
                              overwrite=args.force or args.in_place,
                              before_write=draw if job.picture else None, label=job.label,
                              limits=session.file_limits())
    except BaseException as exc:
        for picture, existed in pictures:  # nothing of a failed conversion remains
            if not existed:
                try:
                    os.unlink(picture.path)
                except OSError:
                    pass
        if isinstance(exc, ModelFileError):
            raise Failure(EXIT_INPUT, str(exc)) from exc
        if isinstance(exc, OutputError):
            raise Failure(EXIT_OUTPUT, str(exc)) from exc
        if isinstance(exc, ConversionError):
            raise Failure(STEP_STATUS[exc.step], str(exc)) from exc
        raise
    elapsed = time.perf_counter() - started

    if session.as_json:
        record = report.to_dict()
        record["source"] = job.label
        record["seconds"] = round(elapsed, 3)
        if not batch:
            print(json_line(record))
        return None, record
    if not batch or session.verbose or full:
        print_convert_report(job, report, pictures, args, session)
    if full:
        return None, None
    where = job.output if report.written else "(not written: dry run)"
    return (f"{job.label} -> {where}: {plural(len(report.changed_layers), 'layer')} changed; "
            f"weights {report.weights_carried} carried over, {report.weights_new} "
            f"re-initialized, {report.weights_dropped} dropped; outputs {report.outputs} "
            f"(max |diff| {format_difference(report.max_abs_difference)})"), None


def print_convert_report(job, report, pictures, args, session) -> None:
    out = sys.stdout
    print(f"{job.label} -> {job.output or '(dry run: nothing written)'}", file=out)
    for line in report_lines(report, session.verbose):
        print(line, file=out)
    shapes = ", ".join(str(s) for s in report.output_shapes)
    print(f"shape check: passed, output shapes {shapes} as before", file=out)
    print(f"inference outputs: {report.outputs_detail}", file=out)
    if report.optimizer_reset:
        print("note: the optimizer's state (moments, step count) is not carried over; the "
              "new model has a fresh optimizer of the same configuration", file=out)
    for picture, _ in pictures:
        print(f"picture: {picture.note}", file=out)
    if report.written:
        print(f"wrote {report.output} (reloaded and checked: same layers, regularizers, "
              "weights and predictions)", file=out)
    elif args.dry_run:
        print("dry run: nothing written", file=out)
    if session.verbose:
        print(f"timings: {', '.join(f'{k} {v:.2f} s' for k, v in report.timings.items())}",
              file=out)
