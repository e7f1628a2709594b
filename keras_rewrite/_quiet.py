"""Keep TensorFlow's start-up log noise out of users' output.

Must run before TensorFlow is imported: its C++ logger reads these variables once, at load time.
Defaults only, so a user who asks for TensorFlow's logs still gets them. Some notices (the CUDA
stub's "Could not find cuda drivers") are printed before logging starts and ignore every
variable; for those, file descriptor 2 points at /dev/null while TensorFlow is imported, and
is restored right after (Python exceptions raised by the import still reach the caller).
This happens on every backend where TensorFlow is installed: on JAX, Keras imports
TensorFlow itself later (for its data pipeline in `fit`), and the notices would appear then.
Set KERAS_REWRITE_TF_LOGS=1 to see everything.
"""
import importlib.util
import logging
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_SHOW = os.environ.get("KERAS_REWRITE_TF_LOGS") == "1"

if not _SHOW:
    # Only the log level. TF_ENABLE_ONEDNN_OPTS=0 would also hide the oneDNN notice, but it
    # changes what TensorFlow can run (a channels_first Conv2D has no CPU kernel without
    # oneDNN): a library must not change the backend's numerics or capabilities to hide a
    # log line. The notice is printed while fd 2 points at /dev/null (below) instead.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_backend_quietly():
    if _SHOW or "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some embedded interpreters)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_backend_quietly()
if not _SHOW:
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
