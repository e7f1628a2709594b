"""``main(argv)`` runs the command line in this process; ``run()`` is the console script
``keras-rewrite`` (and ``python -m keras_rewrite``): it makes ``sys.path`` safe and turns
signals into exit statuses first.

Why ``sys.path`` is cleaned: Keras's deserializer imports the modules a model's config names
(``keras_hub.src.models...``). Python puts the current folder first on ``sys.path`` for
``python -m``, so a folder holding a ``keras_hub/`` package would run its code. `run` removes
the current folder, ``""``, ``"."`` and the folders of the files on the command line from
``sys.path`` before anything is loaded; a ``--custom-objects`` module named by a dotted name
is still found in the current folder, which is on ``sys.path`` (after every installed
package) only while that module is imported.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback

from keras_rewrite.cli.status import EXIT_INTERRUPTED, EXIT_USAGE, EXIT_OK, Interrupted, UsageError
from keras_rewrite.cli.terminal import PROG, error_line

_SIGNALS = ("SIGINT", "SIGTERM")


def main(argv=None) -> int:
    """Run the command line; return the exit status (see `status.EXIT_CODES_HELP`)."""
    from keras_rewrite.cli.arguments import build_parser

    parser = build_parser()
    given = sys.argv[1:] if argv is None else list(argv)
    verbose = "-v" in given or "--verbose" in given  # known even if parsing fails
    try:
        args = parser.parse_args(given)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        from keras_rewrite.cli.commands import (Session, cmd_convert, cmd_demo, cmd_diff, cmd_inspect, cmd_lint,
                               cmd_passes)

        commands = {"convert": cmd_convert, "lint": cmd_lint, "inspect": cmd_inspect,
                    "demo": cmd_demo, "passes": cmd_passes, "diff": cmd_diff}
        from keras_rewrite.cli.arguments import LIMIT_FLAGS

        session = Session(unsafe=getattr(args, "unsafe", False),
                          verbose=getattr(args, "verbose", False),
                          as_json=getattr(args, "format", "text") == "json",
                          limits={name: getattr(args, name) for name in LIMIT_FLAGS
                                  if getattr(args, name, None) is not None})
        import warnings

        # `passes` reads the passes' declarations from their source: no Keras to set up.
        tracebacks = (contextlib.nullcontext() if args.command == "passes"
                      else _full_tracebacks())
        with warnings.catch_warnings(), tracebacks:
            if not session.verbose:
                # Keras warns on load about optimizer variables it skips, compiled metrics
                # not built yet, ...: noise for this tool's users; --verbose shows them.
                warnings.simplefilter("ignore")
            for spec in getattr(args, "custom_objects", []):
                from keras_rewrite.files.model_files import CustomObjectsError, import_custom_objects

                try:
                    import_custom_objects(spec, search_folder=os.getcwd())
                except CustomObjectsError as exc:
                    raise UsageError(f"--custom-objects {exc}") from exc
            return commands[args.command](args, session)
    except UsageError as exc:
        if verbose:
            traceback.print_exc()
        print(error_line(str(exc)), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _ignore_signals()
        print(f"{PROG}: interrupted; no partial output was left", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Interrupted as exc:
        _ignore_signals()
        print(f"{PROG}: terminated by signal {signal.Signals(exc.code - 128).name}; no partial "
              "output was left", file=sys.stderr)
        return exc.code
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
        from keras_rewrite.errors import first_paragraph, layer_in_traceback

        print(error_line(f"unexpected {type(exc).__name__}{layer_in_traceback(exc)}: "
                         f"{first_paragraph(exc)} (this is a bug in {PROG}; rerun with "
                         "--verbose and report it)"), file=sys.stderr)
        from keras_rewrite.cli.status import EXIT_REWRITE

        return EXIT_REWRITE


@contextlib.contextmanager
def _full_tracebacks():
    """Keras's traceback filtering off while a command runs: it drops Keras's own frames, and
    with them the layer an unexpected error happened in (`layer_in_traceback`). Keras is
    imported only if something already imported it or a command is about to."""
    keras = sys.modules.get("keras")
    was_on = keras is not None and keras.config.is_traceback_filtering_enabled()
    if keras is None:
        # Importing keras_rewrite (hence Keras) is what every command does first anyway.
        import keras_rewrite._quiet  # noqa: F401  (quiets TensorFlow before Keras loads it)
        import keras

        was_on = keras.config.is_traceback_filtering_enabled()
    keras.config.disable_traceback_filtering()
    try:
        yield
    finally:
        if was_on:
            keras.config.enable_traceback_filtering()


def _raise_interrupted(signum, frame):
    _ignore_signals()  # one signal is enough: cleaning up must not be interrupted again
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


def _ignore_signals():
    for name in _SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def safe_sys_path(argv, cwd=None) -> list[str]:
    """Remove from ``sys.path`` the current folder (also as ``""`` or ``"."``) and the
    folders of the existing files and folders named in `argv`; return what was removed."""
    cwd = os.path.realpath(cwd or os.getcwd())
    unsafe = {cwd}
    for arg in argv:
        if arg.startswith("-") or not os.path.exists(arg):
            continue
        path = os.path.realpath(arg)
        unsafe.add(path if os.path.isdir(path) else os.path.dirname(path))
    removed = []
    for entry in list(sys.path):
        resolved = os.path.realpath(os.path.join(cwd, entry)) if entry else cwd
        if entry in ("", ".") or resolved in unsafe:
            sys.path.remove(entry)
            removed.append(entry)
    return removed


def run() -> None:
    """The console script: safe ``sys.path``, SIGINT -> 130 and SIGTERM -> 143, then `main`."""
    for name in _SIGNALS:
        signal.signal(getattr(signal, name), _raise_interrupted)
    try:
        safe_sys_path(sys.argv[1:])
        code = main()
    except KeyboardInterrupt:  # before main's own handler was reached
        _ignore_signals()
        print(f"{PROG}: interrupted; no partial output was left", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Interrupted as exc:
        _ignore_signals()
        print(f"{PROG}: terminated by signal {signal.Signals(exc.code - 128).name}; no partial "
              "output was left", file=sys.stderr)
        code = exc.code
    _ignore_signals()  # the work is done: a late signal does not change the outcome
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    run()
