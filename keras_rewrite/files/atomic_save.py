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

A process killed with SIGKILL (or by the kernel for memory) cannot clean up; the next write
into the same folder removes the temporary folders of processes that no longer run.
`scratch_folder` does the same for the folders Keras itself creates in ``$TMPDIR`` while
loading and saving. "No longer runs" is not read from the process id in the name alone: each
folder holds a ``.lock`` file its process keeps locked (``flock``) while it lives, and the
kernel releases the lock however the process ends. A lock anyone can take means a leftover,
also when the id is still in use: a killed process not yet reaped by its parent (a zombie),
an id used again, or a process of another container writing into a shared folder (every
container's first process is 1). Folders without a lock file (older versions, file systems
without locks) are judged by the process id, a zombie counting as dead.
"""
from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import shutil
import tempfile
import time

try:
    import fcntl
except ImportError:  # not on Windows: folders are judged by their process id there
    fcntl = None

from keras_rewrite.errors import (BUG_HINT, RewriteError, first_paragraph, layer_in_traceback,
                                  one_line, show_path)

__all__ = ["OutputError", "check_output_path", "write_file", "save_model", "scratch_folder",
           "remove_stale_temporaries", "TEMP_PREFIX", "OVERWRITE_HINT"]

TEMP_PREFIX = ".keras-rewrite-tmp-"
SCRATCH_PREFIX = "keras-rewrite-scratch-"
NAME_MAX = 255  # bytes in one file name on the usual file systems
LOCK_NAME = ".lock"  # in each temporary folder, locked by its process while it lives
LOCK_GRACE_SECONDS = 60  # a folder without a lock file younger than this may be being made
_OWN_FOLDERS: set = set()  # temporary folders this process made and has not removed
# In library terms; the command line swaps in its flag (keras_rewrite.cli.terminal.CLI_WORDS).
OVERWRITE_HINT = "pass overwrite=True to replace it"


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
        folder, lock = _make_locked_folder(TEMP_PREFIX, p.parent)
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
        _remove_locked_folder(folder, lock)


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
    longer run (killed with SIGKILL or for memory, or a machine that lost power): those whose
    lock file anyone can lock (see the module docstring). Returns their names."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or os.path.abspath(entry.path) in _OWN_FOLDERS:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                if not _alive(int(pid)):
                    os.unlink(entry.path)
                    removed.append(entry.name)
                continue
            lock = _lock_if_stale(entry.path, int(pid))
        except OSError:
            continue
        if lock is False:
            continue
        try:
            shutil.rmtree(entry.path)
            removed.append(entry.name)
        except OSError:
            pass
        finally:
            if lock is not None:
                os.close(lock)
    return removed


def _lock_if_stale(path: str, pid: int):
    """Whether the temporary folder `path` of process `pid` is a leftover: False if not;
    if it is, its lock file's descriptor, locked (closed by the caller once the folder is
    removed), or None for a folder without a usable lock, judged by `pid`."""
    try:
        fd = os.open(os.path.join(path, LOCK_NAME),
                     os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:  # made by an older version, or being made this instant
        if pid == os.getpid():  # not this process's (see the caller): an earlier one's with
            # this id (a container's first process), unless another container is making it
            return None if _age(path) > LOCK_GRACE_SECONDS else False
        return False if _alive(pid) else None
    if fcntl is None:
        os.close(fd)
        return False if _alive(pid) else None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # its process holds it: it runs
        os.close(fd)
        return False
    except OSError:  # no locks on this file system
        os.close(fd)
        return False if _alive(pid) else None
    return fd


def _age(path: str) -> float:
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return 0.0


def _make_locked_folder(prefix: str, parent) -> tuple[str, int | None]:
    """A new temporary folder ``<prefix><pid>-<random>`` in `parent` holding a lock file this
    process keeps locked until `_remove_locked_folder`; (its path, the lock's descriptor or
    None where locks do not work)."""
    folder = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    _OWN_FOLDERS.add(os.path.abspath(folder))
    if fcntl is None:
        return folder, None
    # Locked under another name, then renamed: whoever finds LOCK_NAME finds it locked.
    making = os.path.join(folder, LOCK_NAME + "-new")
    fd = None
    try:
        fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | getattr(os, "O_CLOEXEC", 0), 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(making, os.path.join(folder, LOCK_NAME))
        return folder, fd
    except OSError:  # a file system without locks: the folder is judged by its process id
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(making)
        return folder, None


def _remove_locked_folder(folder: str, lock: int | None) -> None:
    """Remove a folder of `_make_locked_folder`, then release its lock."""
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        _OWN_FOLDERS.discard(os.path.abspath(folder))
        if lock is not None:
            os.close(lock)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has ended but is not yet reaped by its parent (Linux's /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def scratch_folder():
    """A private folder in ``$TMPDIR`` where Keras's own temporary files go while this
    context runs (`tempfile.tempdir` points at it), removed afterwards whatever happens;
    stale ones of dead processes are removed on entry. Not thread-safe: it changes the
    process's default temporary folder for the duration."""
    base = tempfile.gettempdir()
    remove_stale_temporaries(base, SCRATCH_PREFIX)
    folder, lock = _make_locked_folder(SCRATCH_PREFIX, base)
    previous = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
        _remove_locked_folder(folder, lock)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
