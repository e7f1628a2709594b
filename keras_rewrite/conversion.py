"""`convert_file`: rewrite a model file into another, safely, and prove the result.

What ``keras-rewrite convert`` does, for Python users (the command line is a face over it):

1. check the destination can be written (before the slow part);
2. check the source file without running any of it, then load it with ``safe_mode``
   (`keras_rewrite.files.model_files`);
3. rewrite it (`keras_rewrite.rewrite_with_report`);
4. predict the original and the rewritten model on one random batch (the report's largest
   difference; `keras_rewrite.verify.same_model`);
5. save atomically (`keras_rewrite.files.atomic_save`): a temporary file next to the destination,
   reloaded once and compared with the rewritten model (`verify.compare_models`: layers,
   regularizers at any depth, dtype policies, activations, weight hashes, predictions reusing
   step 4's), and only then given its name; exclusively unless ``overwrite``.

Keras's own temporary folders go to a private folder removed afterwards, so no failure or
interruption leaves anything behind (`atomic_save.scratch_folder`).

Errors, one line each, naming the file: `ModelFileError` (the source; step "load"),
`ConversionError` with ``step`` "load", "rewrite" or "write" (a pass or the rebuild failed, or
something nobody raised on purpose), `OutputError` (the destination; step "write").
"""
from __future__ import annotations

import dataclasses
import os
import time

from keras_rewrite.files import atomic_save
from keras_rewrite.files import model_files
from keras_rewrite.verify import predictions, same_model as verify
from keras_rewrite.files.atomic_save import OutputError
from keras_rewrite.errors import show_path
from keras_rewrite.errors import BUG_HINT, RewriteError, unexpected_text  # noqa: F401
from keras_rewrite.files.model_files import ModelFileError
from keras_rewrite.report import Report

__all__ = ["convert_file", "ConversionReport", "ConversionError", "BATCH_SIZE", "BUG_HINT"]

BATCH_SIZE = 2  # predictions are compared on one random batch of this size
# In library terms; the command line swaps in "rerun with --verbose and report it".


class ConversionError(RewriteError):
    """A conversion step failed.

    Attributes:
        path: the file the message names.
        step: "load", "rewrite" or "write".
        unexpected: True when nobody raised it on purpose (a bug, or a Keras surprise).
    """

    def __init__(self, message, *, path, step, unexpected=False):
        super().__init__(message)
        self.path = str(path)
        self.step = step
        self.unexpected = unexpected


@dataclasses.dataclass
class ConversionReport(Report):
    """The rewrite's `Report` (passes, per-layer weights, notes) and what `convert_file` did.

    Attributes:
        source: the input file.
        output: the output file, or None when nothing was to be written.
        written: whether the output was written.
        checked: whether the written file was reloaded and compared before getting its name.
        max_abs_difference: largest absolute difference between the original's and the
            rewritten model's predictions on a random batch of `batch_size`; NaN when the
            input shape changed so that no batch fits both (`SetInputShape`).
        outputs: the verdict on inference outputs in a few words ("unchanged", "changed by
            ReorderBlocks", ...); `outputs_detail` in a sentence.
        output_shapes: the rewritten model's output shapes (the shape check passed).
        optimizer_reset: the original had optimizer state (steps taken), which is not
            carried over: the new model has a fresh optimizer of the same configuration.
        timings: seconds per step ("load", "rewrite", "predict", "write").
    """

    source: str = ""
    output: str | None = None
    written: bool = False
    checked: bool = False
    max_abs_difference: float = 0.0
    batch_size: int = BATCH_SIZE
    outputs: str = ""
    outputs_detail: str = ""
    output_shapes: list = dataclasses.field(default_factory=list)
    optimizer_reset: bool = False
    timings: dict = dataclasses.field(default_factory=dict)

    @property
    def changed_layers(self) -> list[str]:
        """Every layer a pass changed, sorted, once each."""
        return sorted({layer for p in self.passes for layer in p.changed_layers})

    def to_dict(self) -> dict:
        """A JSON-ready summary: passes and their changes, weights, checks, timings."""
        return {
            "source": self.source, "output": self.output, "written": self.written,
            "passes": [{"name": p.pass_name, "modified": p.modified,
                        "outputs_unchanged": p.outputs_unchanged,
                        "changes": [dataclasses.asdict(c) for c in p.changes]}
                       for p in self.passes],
            "layers_changed": len(self.changed_layers),
            "weights": {"carried": self.weights_carried, "new": self.weights_new,
                        "dropped": self.weights_dropped},
            "checks": {"shapes": True, "reloaded_and_compared": self.checked,
                       "outputs": self.outputs,
                       "max_abs_difference": _json_number(self.max_abs_difference),
                       "batch_size": self.batch_size},
            "notes": list(self.notes),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def _json_number(value: float):
    return value if value == value and value not in (float("inf"), float("-inf")) else str(value)


def convert_file(src, dst, passes, *, check: bool = True, safe_mode: bool = True,
                 custom_objects=None, overwrite: bool = False, before_write=None,
                 label: str | None = None, limits=None) -> ConversionReport:
    """Rewrite the model file `src` with `passes` and write the result to `dst`.

    Args:
        src: a ``.keras`` file (a legacy ``.h5`` only with ``safe_mode=False``).
        dst: the output, ending in ``.keras``; None to write nothing (a dry run). The same
            file as `src` with ``overwrite=True`` replaces it.
        passes: as for `keras_rewrite.rewrite`: pass objects, functions, or short names.
        check: reload the written file and compare it with the rewritten model (layers,
            regularizers, dtype policies, activations, weights, predictions) before it gets
            its name; a file that would reload as another model is not written.
        safe_mode: refuse Python bytecode stored in the file (and legacy .h5 files).
        custom_objects: a dict of names to custom classes or functions, as for
            ``keras.saving.load_model``.
        overwrite: replace an existing `dst`.
        before_write: called as ``before_write(original, rewritten)`` after the rewrite and
            before anything is written (the command line draws its picture there); if it
            raises, nothing is written.
        label: how to name `src` in messages (default: `src`).
        limits: a `keras_rewrite.files.model_files.FileLimits`: what may be read of `src` (and of
            the written file, when reloaded) before Keras does; default `FileLimits()`.

    Returns:
        A `ConversionReport`.

    Raises:
        ModelFileError: `src` is not a loadable model file or safe mode refuses it.
        OutputError: `dst` cannot be written, or the written file would reload as another
            model; nothing was left behind.
        ConversionError: the rewrite failed (``step="rewrite"``), or something unexpected
            happened while loading, rewriting or writing.

    Example:
        >>> import keras_rewrite
        >>> report = keras_rewrite.convert_file("model.keras", "new.keras",
        ...                                     ["l2", "reorder"])  # doctest: +SKIP
        >>> print(report.outputs, report.max_abs_difference)  # doctest: +SKIP
    """
    from keras_rewrite.rebuild.pipeline import rewrite_with_report

    label = label or str(src)
    timings = {}
    if dst is not None:
        same = os.path.exists(src) and os.path.exists(dst) and os.path.samefile(src, dst)
        atomic_save.check_output_path(dst, overwrite=overwrite or same)
    with atomic_save.scratch_folder():
        started = time.perf_counter()
        try:
            model = model_files.load_model(src, safe_mode=safe_mode,
                                           custom_objects=custom_objects, limits=limits)
        except ModelFileError:
            raise
        except Exception as exc:
            raise _unexpected(label, "load", "while loading", exc) from exc
        timings["load"] = time.perf_counter() - started

        started = time.perf_counter()
        try:
            result = rewrite_with_report(model, passes)
        except RewriteError as exc:
            raise ConversionError(f"{show_path(label)}: rewrite failed: {exc}", path=label,
                                  step="rewrite") from exc
        except Exception as exc:  # a bug somewhere: still one line; the input is untouched
            raise _unexpected(label, "rewrite", "while rewriting", exc) from exc
        timings["rewrite"] = time.perf_counter() - started
        new_model = result.model

        started = time.perf_counter()
        try:
            x, original_outputs = predictions.sample_batch(model, batch=BATCH_SIZE)
        except Exception as exc:
            raise _unexpected(label, "rewrite", "while predicting the input model on a random "
                              "batch", exc) from exc
        try:
            try:
                expected = predictions.predict(new_model, x)
                diff = predictions.max_abs_difference(original_outputs, expected)
            except Exception:
                if _input_shapes(new_model) == _input_shapes(model):
                    raise
                # A new input shape (SetInputShape) the original's batch does not fit: the
                # two cannot be compared; the reload check uses a batch of the new shape.
                x, expected = predictions.sample_batch(new_model, batch=BATCH_SIZE)
                diff = float("nan")
        except Exception as exc:
            raise _unexpected(label, "rewrite", "while predicting the rewritten model on a "
                              "random batch", exc) from exc
        timings["predict"] = time.perf_counter() - started

        if before_write is not None:
            before_write(model, new_model)

        written = False
        if dst is not None:
            started = time.perf_counter()
            reload_check = None
            if check:
                def reload_check(tmp):
                    check_written(tmp, dst, new_model, x, expected, safe_mode=safe_mode,
                                  custom_objects=custom_objects, limits=limits)
            same = os.path.exists(src) and os.path.exists(dst) and os.path.samefile(src, dst)
            try:
                atomic_save.save_model(new_model, dst, overwrite=overwrite or same,
                                       check=reload_check)
            except OutputError as exc:
                if exc.reason.startswith("Keras could not save") and _unsaveable(model):
                    reason = exc.reason.removesuffix(f"; {BUG_HINT}")
                    raise OutputError(dst, f"{reason}; Keras cannot save the model it loaded "
                                           f"from {show_path(label)} either: a Keras "
                                           "limitation, not the rewrite's") from exc
                raise
            except Exception as exc:  # save_model has removed its temporary folder
                raise _unexpected(dst, "write", "while writing or reloading", exc) from exc
            written = True
            timings["write"] = time.perf_counter() - started

    report = result.report
    outputs, detail = describe_outputs(report, diff, BATCH_SIZE)
    fields = {f.name: getattr(report, f.name) for f in dataclasses.fields(Report) if f.init}
    return ConversionReport(
        **fields, source=str(src), output=None if dst is None else str(dst), written=written,
        checked=written and check, max_abs_difference=diff, outputs=outputs,
        outputs_detail=detail, output_shapes=[tuple(t.shape) for t in new_model.outputs],
        optimizer_reset=_optimizer_steps(model) > 0, timings=timings)


def _unsaveable(model) -> bool:
    """Whether Keras cannot save `model` itself (a reloaded int8 KerasHub model: Keras 3.15
    saves None for its scales); tried in a scratch folder."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="keras_rewrite_") as folder:
        try:
            model.save(os.path.join(folder, "original.keras"))
        except Exception:
            return True
    return False


def _unexpected(label, step: str, doing: str, exc: BaseException) -> ConversionError:
    """One line for an exception nobody raised on purpose: the file, the step, the layer
    where known, the first paragraph of the message, and what to do."""
    return ConversionError(unexpected_text(label, doing, exc), path=label, step=step,
                           unexpected=True)


# What a reload check's first difference means, by its kind (see verify.Difference).
RELOAD_PROBLEMS = {
    "layers": "the written file would reload without the rewrite",
    "config": "the written file would reload without the rewrite",
    "weights": "the written file reloads with other weights",
}


def check_written(tmp, output, new_model, x, expected, *, safe_mode=True,
                  custom_objects=None, limits=None) -> None:
    """The reload check of a written file: load it once and compare it with the rewritten
    model (layers, regularizers at any depth, dtype policies, activations, weight hashes) and
    its predictions on `x` with `expected`, computed before.

    Raises:
        OutputError: the file does not reload, or reloads as another model; one line naming
            the layer and what was lost.
    """
    try:
        reloaded = model_files.load_model(tmp, safe_mode=safe_mode,
                                          custom_objects=custom_objects, limits=limits)
    except ModelFileError as exc:
        raise OutputError(output, f"the written file does not reload: {exc.reason}") from exc
    if type(reloaded) is not type(new_model):  # a task would lose its preprocessor, methods
        raise OutputError(output, f"the written file would reload as a "
                                  f"{type(reloaded).__name__}, not a "
                                  f"{type(new_model).__name__}; not written")
    comparison = verify.compare_models(new_model, reloaded, x, expected)
    if comparison:
        return
    first = comparison.differences[0]
    if first.kind == "predictions":
        raise OutputError(output, "the written file reloads with different predictions "
                                  "(largest absolute difference "
                                  f"{format_difference(comparison.max_abs_difference)}); not "
                                  "written")
    raise OutputError(output, comparison.message(RELOAD_PROBLEMS[first.kind]) + "; not written")


def format_difference(value: float) -> str:
    """``0`` or three significant digits.

    >>> format_difference(0.0), format_difference(1.23456e-7)
    ('0', '1.23e-07')
    """
    return "0" if value == 0 else f"{value:.3g}"


def _input_shapes(model) -> list:
    return [tuple(t.shape) for t in model.inputs]


def describe_outputs(report, diff: float, batch: int) -> tuple[str, str]:
    """Whether inference outputs changed, as (a few words, a sentence): the passes' own
    verdict (`Report.outputs_unchanged`) and the largest absolute difference measured
    between the original and the rewritten model on a random batch (NaN: not comparable,
    the input shape changed)."""
    measured = f"largest absolute difference on a random batch of {batch}: " \
               f"{format_difference(diff)}"
    if diff != diff:
        measured = ("not compared: the input shape changed, so no batch fits both models")
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


def _optimizer_steps(model) -> int:
    optimizer = getattr(model, "optimizer", None)
    try:
        return int(optimizer.iterations.numpy()) if optimizer is not None else 0
    except Exception:  # an unbuilt optimizer has no iterations variable yet
        return 0
