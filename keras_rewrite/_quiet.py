"""Keep TensorFlow's start-up log noise out of users' output.

Must run before TensorFlow is imported: its C++ logger reads these variables once, at load time.
Defaults only, so a user who asks for TensorFlow's logs still gets them. Some notices (the CUDA
stub's "Could not find cuda drivers") are printed before logging starts and ignore every
variable; for those, file descriptor 2 points at /dev/null while TensorFlow is imported, and
is restored right after (Python exceptions raised by the import still reach the caller).
This module does not import TensorFlow: it hooks the first import of TensorFlow or Keras
(`_import_hooks`), whoever makes it, so importing keras_rewrite stays free. This happens on
every backend where TensorFlow is installed: on JAX, Keras imports TensorFlow itself later (for
its data pipeline in `fit`), and the notices would appear then.
Set KERAS_REWRITE_TF_LOGS=1 to see everything.
"""
import contextlib
import logging
import os
import sys

from keras_rewrite._import_hooks import on_import

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_SHOW = os.environ.get("KERAS_REWRITE_TF_LOGS") == "1"

if not _SHOW:
    # Only the log level. TF_ENABLE_ONEDNN_OPTS=0 would also hide the oneDNN notice, but it
    # changes what TensorFlow can run (a channels_first Conv2D has no CPU kernel without
    # oneDNN): a library must not change the backend's numerics or capabilities to hide a
    # log line. The notice is printed while fd 2 points at /dev/null (below) instead.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _stderr_to_devnull():
    yield from _redirected()


@contextlib.contextmanager
def _stderr_to_devnull_unless_tensorflow_loaded():
    if "tensorflow" in sys.modules:  # imported before Keras: nothing left to hide
        yield
        return
    yield from _redirected()


def _redirected():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _quiet_loggers():
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


if not _SHOW:
    on_import("tensorflow", around=_stderr_to_devnull, after=_quiet_loggers)
    # Keras imports TensorFlow inside its own import (TensorFlow backend)
    on_import("keras", around=_stderr_to_devnull_unless_tensorflow_loaded, after=_quiet_loggers)
