"""``--jobs N``: a batch's inputs converted by N worker processes, results in input order.

Each worker is a fresh interpreter (the ``spawn`` start method: forking a process that has
loaded TensorFlow is unsafe), set up like the command's own process (``sys.path`` without the
current folder, which ``spawn`` copies from the parent; the ``--custom-objects`` modules
imported; Keras warnings off unless ``--verbose``; SIGINT/SIGTERM raising, so a conversion
cut short removes its temporary files). A worker takes one input at a time from a queue and
sends back an `Outcome`; whatever a conversion prints (its report with ``--verbose``) is
captured and returned, so the parent prints everything in input order, whatever order the
workers finish in. A worker that dies (killed, out of memory) fails its input with exit status
4; the others go on. On SIGINT/SIGTERM the parent stops the workers (SIGTERM, which each
turns into its own clean-up) and waits for them before it reports the interruption.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import queue
import signal
import traceback

from keras_rewrite.cli.status import EXIT_REWRITE, Failure, UsageError

POLL_SECONDS = 0.5  # how often the parent checks that busy workers are alive
STOP_SECONDS = 30  # how long a stopped worker gets to clean up before it is killed


@dataclasses.dataclass
class Outcome:
    """What one input's conversion gave: its result line and JSON record, or its failure
    (exit status and one-line message); `printed` is what the conversion wrote on stdout,
    `trace` the traceback of a failure (printed with --verbose)."""

    line: str | None = None
    record: dict | None = None
    failure: Failure | None = None
    printed: str = ""
    trace: str = ""


def convert_collecting(session, job, specs, args, *, batch: bool, full: bool) -> Outcome:
    """Convert one input with `one_file.convert_one`; every failure becomes an `Outcome`."""
    from keras_rewrite.cli.one_file import convert_one, unexpected

    try:
        line, record = convert_one(session, job, specs, args, batch, full=full)
        return Outcome(line, record)
    except Failure as failure:
        return Outcome(failure=failure, trace=traceback.format_exc())
    except UsageError:
        raise
    except Exception as exc:  # keep the batch going; the message says it is unexpected
        return Outcome(failure=Failure(EXIT_REWRITE, unexpected(job.label, "while converting",
                                                                exc)),
                       trace=traceback.format_exc())


def in_process(session, jobs, specs, args, progress, *, full: bool):
    """Yield (index, job, Outcome) converting one input after the other in this process."""
    for index, job in enumerate(jobs, 1):
        progress.start(index, job.label)
        yield index, job, convert_collecting(session, job, specs, args, batch=len(jobs) > 1,
                                             full=full)


def in_workers(session, jobs, specs, args, progress, workers: int):
    """Yield (index, job, Outcome) in input order, converting in `workers` processes."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    setup = (session, specs, args, list(getattr(args, "custom_objects", [])), os.getcwd())
    with _started_elsewhere():  # the queues' locks start multiprocessing's resource tracker
        tasks, results = context.Queue(), context.Queue()
        for index, job in enumerate(jobs, 1):
            tasks.put((index, job))
        for _ in range(workers):
            tasks.put(None)  # one stop sign per worker
        processes = [context.Process(target=_work, args=(tasks, results, setup), daemon=True)
                     for _ in range(workers)]
    busy: dict[int, int] = {}  # worker pid -> the input it is converting
    done: dict[int, Outcome] = {}
    next_index = 1
    try:
        with _started_elsewhere():
            for process in processes:
                process.start()
        while next_index <= len(jobs):
            while next_index in done:
                yield next_index, jobs[next_index - 1], done.pop(next_index)
                next_index += 1
            if next_index > len(jobs):
                break
            try:
                kind, pid, index, outcome = results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                _fail_dead_workers(processes, busy, done, jobs)
                if all(process.exitcode is not None for process in processes):
                    for index in range(next_index, len(jobs) + 1):  # nobody is left to try
                        done.setdefault(index, Outcome(failure=Failure(
                            EXIT_REWRITE, f"{jobs[index - 1].label}: no worker process was "
                                          "left to convert it (they died; see stderr)")))
                continue
            if kind == "started":
                busy[pid] = index
                progress.start(index, jobs[index - 1].label)
            else:
                busy.pop(pid, None)
                done[index] = outcome
        for process in processes:
            process.join()
    finally:
        _stop(processes)


@contextlib.contextmanager
def _started_elsewhere():
    """The current folder is Python's standard library folder while helper processes start.

    A spawned process is ``python -c "from multiprocessing... import ..."``, and ``-c`` puts
    the current folder first on ``sys.path``: a ``multiprocessing/`` package in the user's
    folder would run before the parent's (cleaned) ``sys.path`` arrives. In the standard
    library's own folder the first entry finds nothing that is not found there anyway. A
    worker goes back to the user's folder (`_work`) once its ``sys.path`` is safe."""
    here = os.getcwd()
    os.chdir(os.path.dirname(os.__file__))
    try:
        yield
    finally:
        os.chdir(here)


def _fail_dead_workers(processes, busy, done, jobs) -> None:
    for process in processes:
        if process.exitcode is not None and process.pid in busy:
            index = busy.pop(process.pid)
            code = process.exitcode
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            done[index] = Outcome(failure=Failure(
                EXIT_REWRITE, f"{jobs[index - 1].label}: the worker process converting it died "
                              f"({how}); nothing of it was written"))


def _stop(processes) -> None:
    """Stop workers still running (an interruption): SIGTERM, time to clean up, then kill."""
    for process in processes:
        if process.pid is not None and process.is_alive():
            process.terminate()
    for process in processes:
        if process.pid is None:  # never started
            continue
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


_stopping = False  # in a worker: a signal came; take no further input


def _stop_worker(signum, frame):
    """In a worker, SIGINT/SIGTERM interrupt the conversion (which cleans up as it unwinds)
    and end the worker: even if something swallows the exception, no input is taken after."""
    from keras_rewrite.cli.status import Interrupted

    global _stopping
    if _stopping:
        return
    _stopping = True
    raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)


def _work(tasks, results, setup) -> None:
    """A worker's life: set up like the command's process, then convert until told to stop."""
    from keras_rewrite.cli.status import Interrupted

    for name in ("SIGINT", "SIGTERM"):
        signal.signal(getattr(signal, name), _stop_worker)
    session, specs, args, custom_objects, cwd = setup
    os.chdir(cwd)  # see _started_elsewhere
    try:
        import warnings

        import keras_rewrite._quiet  # noqa: F401  (quiets TensorFlow before Keras loads it)
        import keras

        keras.config.disable_traceback_filtering()
        if not session.verbose:
            warnings.simplefilter("ignore")
        from keras_rewrite.files.model_files import import_custom_objects

        for spec in custom_objects:  # the parent imported them already: they import here
            import_custom_objects(spec, search_folder=cwd)
        pid = os.getpid()
        while not _stopping and (task := tasks.get()) is not None:
            index, job = task
            results.put(("started", pid, index, None))
            captured = io.StringIO()
            with contextlib.redirect_stdout(captured):
                outcome = convert_collecting(session, job, specs, args, batch=True, full=False)
            outcome.printed = captured.getvalue()
            results.put(("done", pid, index, outcome))
    except (KeyboardInterrupt, Interrupted):
        pass  # the conversion removed what it had written; the parent reports the signal
