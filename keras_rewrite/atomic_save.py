"""Write files so that a reader sees the old file, the whole new file, or nothing.

Every file keras_rewrite writes (a model, a picture, a report) goes through `write_file`:

1. The content is written inside a temporary folder next to the destination,
   ``.keras-rewrite-tmp-<pid>-<random>`` (Keras needs a ``.keras`` name to save a model, so
   the model is ``model.keras`` *inside* that folder; the folder's name ends in no model
   suffix, so a later run over the destination folder never takes a leftover for a model).
2. The caller's check runs on it (a model is reloaded and compared, see `conversion`).
3. It gets its final name: without ``overwrite`` by a hard link, which fails when the name
   exists, so of two runs writing the same new file exactly one wins and the other gets
   `OutputError`; with ``overwrite`` by ``os.replace``, which replaces a symbolic link itself
   and never writes through it to the file it points at.
4. The temporary folder is removed, on success, on failure and on interruption alike.

A process killed with SIGKILL cannot clean up; the next write into the same folder removes
the temporary folders of processes that no longer run. `scratch_folder` does the same for the
folders Keras itself creates in ``$TMPDIR`` while loading and saving.
"""
from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import shutil
import tempfile

from .error_text import first_paragraph, layer_in_traceback, one_line, show_path
from .errors import RewriteError

__all__ = ["OutputError", "check_output_path", "write_file", "save_model", "scratch_folder",
           "remove_stale_temporaries", "TEMP_PREFIX", "OVERWRITE_HINT"]

TEMP_PREFIX = ".keras-rewrite-tmp-"
SCRATCH_PREFIX = "keras-rewrite-scratch-"
NAME_MAX = 255  # bytes in one file name on the usual file systems
# In library terms; the command line swaps in its flag (keras_rewrite_cli.terminal.CLI_WORDS).
OVERWRITE_HINT = "pass overwrite=True to replace it"
BUG_HINT = "report it as a bug"


class OutputError(RewriteError, OSError):
    """The output file could not be written (exists, folder missing or not writable, the
    written file did not reload identically). Nothing was left at the destination.

    Attributes:
        path: the destination as given.
        reason: what is wrong, expected and received (one line).
    """

    def __init__(self, path, reason):
        RewriteError.__init__(self, f"{show_path(path)}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __str__(self):
        return self.args[0]


def check_output_path(path, *, overwrite: bool = False, suffixes=(".keras",),
                      input_paths=()) -> None:
    """Raise `OutputError` unless `path` can be written: it ends in one of `suffixes`, its
    name fits the file system, its folder exists and is writable, it is not a folder, it is
    none of `input_paths`, and it exists only when `overwrite`."""
    p = pathlib.Path(path)
    folder = p.parent
    if len(os.fsencode(p.name)) > NAME_MAX:
        raise OutputError(path, f"the file name is {len(os.fsencode(p.name))} bytes long; "
                                f"expected at most {NAME_MAX}")
    if suffixes and p.suffix.lower() not in suffixes:
        raise OutputError(path, f"expected a name ending in {' or '.join(suffixes)}; received "
                                f"the suffix {p.suffix or '(none)'!r}")
    if not folder.exists():
        raise OutputError(path, f"the folder {str(folder)!r} does not exist; expected an "
                                "existing folder")
    if not folder.is_dir():
        raise OutputError(path, f"{str(folder)!r} is not a folder; expected an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(path, f"the folder {str(folder)!r} is not writable")
    if os.path.isdir(p) and not os.path.islink(p):
        raise OutputError(path, "is a folder; expected a file name")
    for given in input_paths:  # even with overwrite: only an explicit in-place replaces it
        if os.path.exists(given) and os.path.exists(p) and os.path.samefile(given, p):
            raise OutputError(path, "is the input file; refusing to overwrite the input")
    if not overwrite and os.path.lexists(p):
        raise OutputError(path, f"already exists; {OVERWRITE_HINT}")


def write_file(path, write, *, overwrite: bool = False, check=None, suffixes=None,
               temp_name: str | None = None) -> None:
    """Write a file atomically (see the module docstring).

    Args:
        path: the destination.
        write: called with a temporary path (in a private folder next to `path`, named
            `temp_name` or like `path`); it writes the content there.
        overwrite: replace an existing `path` (its permission bits are kept).
        check: called with the temporary path once written; raise to refuse the file.
        suffixes: allowed suffixes of `path` (None: any).
        temp_name: the file name inside the temporary folder.

    Raises:
        OutputError: nothing was written; the destination is as it was.
    """
    check_output_path(path, overwrite=overwrite, suffixes=suffixes)
    p = pathlib.Path(path)
    remove_stale_temporaries(p.parent)
    try:
        folder = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=p.parent)
    except OSError as exc:
        raise OutputError(path, f"cannot create a file in the folder {str(p.parent)!r}: "
                                f"{exc.strerror or exc}") from exc
    try:
        tmp = os.path.join(folder, temp_name or ("out" + p.suffix))
        write(tmp)
        if not os.path.isfile(tmp):
            raise OutputError(path, "nothing was written")
        if check is not None:
            check(tmp)
        _publish(tmp, p, overwrite)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _publish(tmp: str, p: pathlib.Path, overwrite: bool) -> None:
    """Give `tmp` the name `p`: exclusively without `overwrite`, else replacing `p`."""
    try:
        if overwrite:
            if os.path.exists(p) and not os.path.islink(p):  # keep the replaced file's mode
                os.chmod(tmp, os.stat(p).st_mode & 0o7777)
            else:
                os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, p)
            return
        os.chmod(tmp, 0o666 & ~_umask())
        try:
            os.link(tmp, p, follow_symlinks=False)
        except FileExistsError:
            raise
        except OSError as exc:  # no hard links here (some network and FAT file systems)
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                                 errno.EMLINK):
                raise
            # Claim the name exclusively, then replace the empty claim with the file.
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            os.replace(tmp, p)
    except FileExistsError:
        raise OutputError(p, f"already exists (another process wrote it meanwhile); "
                             f"{OVERWRITE_HINT}") from None
    except OSError as exc:
        raise OutputError(p, f"cannot be given its final name: {exc.strerror or one_line(exc)}"
                             + ("; the existing file is protected (immutable or in a "
                                "read-only place)" if exc.errno in (errno.EPERM, errno.EACCES,
                                                                   errno.EROFS) else "")
                          ) from exc


def save_model(model, path, *, overwrite: bool = False, check=None) -> None:
    """Write `model` to `path` (ending in .keras) atomically; see `write_file`.

    Args:
        model: the model to save.
        path: the destination, ending in .keras.
        overwrite: replace an existing file at `path` (its permission bits are kept).
        check: called with the temporary file's path once it is written; it should reload
            the file and raise `OutputError` if the reloaded model is not the same.

    Raises:
        OutputError: nothing was written (see `check_output_path`), or saving or `check`
            failed; no temporary file remains.
    """
    def write(tmp):
        try:
            model.save(tmp)
        except OSError as exc:
            raise OutputError(path, f"writing failed: {exc.strerror or one_line(exc)}") from exc
        except Exception as exc:
            raise OutputError(path, f"Keras could not save the model{layer_in_traceback(exc)}: "
                                    f"{type(exc).__name__}: {first_paragraph(exc)}; {BUG_HINT}") from exc

    write_file(path, write, overwrite=overwrite, check=check, suffixes=(".keras",),
               temp_name="model.keras")


def remove_stale_temporaries(folder, prefix: str = TEMP_PREFIX) -> list[str]:
    """Remove the temporary folders in `folder` left by keras_rewrite processes that no
    longer run (killed with SIGKILL, or a machine that lost power). Returns their names."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def scratch_folder():
    """A private folder in ``$TMPDIR`` where Keras's own temporary files go while this
    context runs (`tempfile.tempdir` points at it), removed afterwards whatever happens;
    stale ones of dead processes are removed on entry. Not thread-safe: it changes the
    process's default temporary folder for the duration."""
    base = tempfile.gettempdir()
    remove_stale_temporaries(base, SCRATCH_PREFIX)
    folder = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base)
    previous = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
