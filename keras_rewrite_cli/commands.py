"""The subcommands: ``convert``, ``lint``, ``inspect`` and ``demo``.

Each reads its parsed arguments here and nowhere deeper: ``convert`` calls
`keras_rewrite.convert_file` once per input (the library does the checking, loading,
rewriting, atomic saving and the reload check) and maps its errors to exit statuses.
Keras is imported inside the commands only.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback

from . import batch as batch_module
from .batch import BatchReport, Job
from .pass_options import ALL_PASSES, PassSpec, build_passes, fix_hint, pass_specs_from_args
from .status import (EXIT_FINDINGS, EXIT_INPUT, EXIT_OK, EXIT_OUTPUT, EXIT_REWRITE,
                     STEP_STATUS, Failure, UsageError)
from .terminal import error_line, json_line, pass_lines, plural, report_lines

DEMO_OUTPUT = "seed_unet.rewritten.keras"


@dataclasses.dataclass
class Session:
    """Options shared by the subcommands that load models."""

    unsafe: bool = False
    verbose: bool = False
    as_json: bool = False

    @property
    def safe_mode(self) -> bool:
        return not self.unsafe


def unexpected(label: str, step: str, exc: BaseException) -> str:
    """One line for an exception nobody raised on purpose."""
    from keras_rewrite.error_text import first_paragraph, layer_in_traceback, show_path

    return (f"{show_path(label)}: unexpected {type(exc).__name__} {step}"
            f"{layer_in_traceback(exc)}: {first_paragraph(exc)}; report it as a bug")


def load(session: Session, path: str):
    """Load a model file for lint and inspect; errors as `Failure` (exit status 3)."""
    from keras_rewrite.model_files import ModelFileError, load_model

    try:
        return load_model(path, safe_mode=session.safe_mode)
    except ModelFileError as exc:
        raise Failure(EXIT_INPUT, str(exc)) from exc
    except Exception as exc:  # a bug of ours or a Keras surprise: still one line, status 3
        raise Failure(EXIT_INPUT, unexpected(path, "while loading", exc)) from exc


def check_picture_path(path, force: bool) -> None:
    """Fail before the slow part when a picture cannot be written there."""
    from keras_rewrite.atomic_save import OutputError, check_output_path

    try:
        check_output_path(path, overwrite=force, suffixes=None)
    except OutputError as exc:
        raise Failure(EXIT_OUTPUT, str(exc)) from exc


# --------------------------------------------------------------------------- convert


def convert_one(session: Session, job: Job, specs, args, batch: bool):
    """Convert one input with `keras_rewrite.convert_file`; print its full report unless in
    a batch; return (its result line, its JSON record).

    Raises:
        Failure: with the exit status of the step that failed: loading 3, rewriting (and
            predicting on the random batch) 4, writing, drawing and the reload check 5.
    """
    from keras_rewrite import dot
    from keras_rewrite.atomic_save import OutputError, check_output_path
    from keras_rewrite.conversion import ConversionError, convert_file, format_difference
    from keras_rewrite.model_files import ModelFileError

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
        from keras_rewrite.graph import to_graph

        try:
            text = dot.to_dot(to_graph(rewritten), before=to_graph(original),
                              title=f"{job.label} -> {job.output or '(dry run)'}")
            existed = os.path.lexists(args.diff_svg)
            picture = dot.write_picture(text, args.diff_svg, overwrite=args.force)
        except (dot.PictureError, OutputError) as exc:
            raise Failure(EXIT_OUTPUT, str(exc)) from exc
        except Exception as exc:
            raise Failure(EXIT_OUTPUT, unexpected(args.diff_svg, "while drawing", exc)) from exc
        pictures.append((picture, existed))

    started = time.perf_counter()
    try:
        report = convert_file(job.source, job.output if write else None, passes,
                              safe_mode=session.safe_mode,
                              overwrite=args.force or args.in_place,
                              before_write=draw if args.diff_svg else None, label=job.label)
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
    if not batch or session.verbose:
        print_convert_report(job, report, pictures, args, session)
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


def cmd_convert(args, session: Session) -> int:
    specs = pass_specs_from_args(args)
    try:
        files, batch = batch_module.expand_inputs(args.inputs)
    except Failure as failure:
        print(error_line(failure.message), file=sys.stderr)
        return failure.code
    if args.diff_svg and len(files) > 1:
        raise UsageError("--diff-svg draws one model; expected a single input file")
    jobs = batch_module.plan_jobs(files, batch, args.output, in_place=args.in_place,
                                  dry_run=args.dry_run)
    try:
        if batch and args.output is not None:
            batch_module.prepare_output_folder(args.output, args.dry_run)
        if args.diff_svg:
            check_picture_path(args.diff_svg, args.force)
    except Failure as failure:
        print(error_line(failure.message), file=sys.stderr)
        return failure.code
    build_passes(specs)  # misconfigured passes are a usage error before any file is read
    return run_jobs(session, jobs, specs, args)


def run_jobs(session: Session, jobs: list[Job], specs, args) -> int:
    batch = len(jobs) > 1
    report = BatchReport(len(jobs), as_json=session.as_json)
    started = time.perf_counter()
    try:
        for index, job in enumerate(jobs, 1):
            report.progress.start(index, job.label)
            try:
                line, record = convert_one(session, job, specs, args, batch)
            except Failure as failure:
                report.failure(index, job.label, failure)
                if session.verbose:
                    traceback.print_exc()
                continue
            except UsageError:
                raise
            except Exception as exc:  # keep the batch going; the message says it is unexpected
                failure = Failure(EXIT_REWRITE, unexpected(job.label, "while converting", exc))
                report.failure(index, job.label, failure)
                if session.verbose:
                    traceback.print_exc()
                continue
            if job.output is not None and not args.dry_run:
                report.written.append(job.output)
            if batch:
                report.success(index, line, record)
            else:
                report.done += 1
    finally:
        report.progress.close()
    if batch and not session.as_json:
        verb = "rewritten (dry run, nothing written)" if args.dry_run else "converted"
        print(f"{report.summary(verb)} in {time.perf_counter() - started:.1f} s")
    return report.exit_status()


def cmd_demo(args, session: Session) -> int:
    from importlib import resources

    bundled = resources.files("keras_rewrite") / "data" / "seed_unet.keras"
    with resources.as_file(bundled) as path:
        specs = [PassSpec(name, {}, "demo") for name in ALL_PASSES]
        output = args.output or DEMO_OUTPUT
        if not output.endswith(".keras"):
            raise UsageError(f"-o {output}: expected a file name ending in .keras")
        args.dry_run, args.in_place = False, False
        if args.diff_svg:
            try:
                check_picture_path(args.diff_svg, args.force)
            except Failure as failure:
                print(error_line(failure.message), file=sys.stderr)
                return failure.code
        job = Job(str(path), output, label="seed_unet.keras (bundled seed U-Net)")
        if not session.as_json:
            print("demo: the seed U-Net of 'Where do I add kernel_regularizer in a U-Net?', "
                  f"converted with the passes {', '.join(ALL_PASSES)}\n")
        return run_jobs(session, [job], specs, args)


# --------------------------------------------------------------------------- lint, inspect


def cmd_lint(args, session: Session) -> int:
    from keras_rewrite.errors import RewriteError
    from keras_rewrite.lint import lint

    try:
        model = load(session, args.input)
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
    if session.as_json:
        print(json_line({"source": args.input, "findings": [
            {"rule": f.rule, "layers": list(f.layers), "fixed_by": f.fixed_by,
             "explanation": f.explanation} for f in findings]}))
        return EXIT_FINDINGS if findings else EXIT_OK
    if not findings:
        print(f"{args.input}: no findings")
        return EXIT_OK
    print(f"{args.input}: {plural(len(findings), 'finding')}")
    for finding in findings:
        fix = (f"fixed by: keras-rewrite convert {fix_hint(finding.fixed_by)}"
               if finding.fixed_by else "no pass fixes it: it needs a design change")
        print(f"\n[{finding.rule}] {', '.join(finding.layers)}")
        print(f"  {fix}")
        if session.verbose or not args.brief:
            print(_indent(finding.explanation, "  "))
    return EXIT_FINDINGS


def cmd_inspect(args, session: Session) -> int:
    from keras_rewrite import dot
    from keras_rewrite.atomic_save import OutputError
    from keras_rewrite.errors import RewriteError
    from keras_rewrite.graph import iter_graphs, to_graph
    from keras_rewrite.passes.base import pass_name, run_passes

    specs = pass_specs_from_args(args)
    if not specs:
        specs = [PassSpec(name, {}, "inspect") for name in ALL_PASSES]
    build_passes(specs)
    try:
        if args.svg:
            check_picture_path(args.svg, args.force)
        model = load(session, args.input)
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
        try:
            (result,) = run_passes(fresh, [p])
        except RewriteError as exc:
            print(f"  {spec.name} ({pass_name(p)}): would fail: {exc}")
            continue
        for line in pass_lines(result, session.verbose, "  "):
            print(line.replace(f"  {result.pass_name}:", f"  {spec.name} ({result.pass_name}):",
                               1))
    if args.svg:
        try:
            picture = dot.write_picture(dot.to_dot(graph, title=args.input), args.svg,
                                        overwrite=args.force)
        except (dot.PictureError, OutputError) as exc:
            print(error_line(str(exc)), file=sys.stderr)
            return EXIT_OUTPUT
        print(f"\npicture: {picture.note}")
    return EXIT_OK


def _indent(text: str, prefix: str, width: int = 92) -> str:
    import textwrap

    return textwrap.fill(text, width=width, initial_indent=prefix, subsequent_indent=prefix)
