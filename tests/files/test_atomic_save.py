"""keras_rewrite.files.atomic_save: complete files or none, exclusive names, nothing left behind."""
import os
import pathlib
import stat
import zipfile

import pytest

from keras_rewrite.files import atomic_save
from keras_rewrite.files.atomic_save import OutputError
from keras_rewrite.files.model_files import load_model
from keras_rewrite.verify import max_abs_difference, predict, random_batch
from helpers import tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("save") / "good.keras"
    tiny_model().save(path)
    return path, None


# --------------------------------------------------------------------------- save_model


def listing(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir())


def test_save_writes_a_loadable_file_with_normal_permissions(tmp_path):
    model = tiny_model()
    out = tmp_path / "out.keras"
    seen = []
    atomic_save.save_model(model, out, check=seen.append)
    assert listing(tmp_path) == ["out.keras"]
    # checked in a temporary folder next to the output, whose name is no model's
    assert seen and pathlib.Path(seen[0]).parent.parent == tmp_path
    assert pathlib.Path(seen[0]).parent.name.startswith(atomic_save.TEMP_PREFIX)
    assert not pathlib.Path(seen[0]).parent.name.endswith(".keras")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    x = random_batch(model)
    assert max_abs_difference(predict(model, x), predict(load_model(out), x)) == 0


def test_existing_output_needs_overwrite_and_keeps_its_mode(tmp_path):
    out = tmp_path / "out.keras"
    out.write_text("precious")
    with pytest.raises(OutputError, match="already exists; pass overwrite=True"):
        atomic_save.save_model(tiny_model(), out)
    assert out.read_text() == "precious" and listing(tmp_path) == ["out.keras"]
    out.chmod(0o600)
    atomic_save.save_model(tiny_model(), out, overwrite=True)
    assert zipfile.is_zipfile(out) and stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize("failure", [OutputError("x", "reload differs"), KeyboardInterrupt()])
def test_failed_verification_leaves_nothing(tmp_path, failure):
    def check(tmp):
        assert os.path.exists(tmp)
        raise failure

    with pytest.raises(type(failure)):
        atomic_save.save_model(tiny_model(), tmp_path / "out.keras", check=check)
    assert listing(tmp_path) == []


def test_failed_verification_keeps_the_existing_file(tmp_path):
    out = tmp_path / "out.keras"
    out.write_text("old")

    def check(tmp):
        raise OutputError(out, "reload differs")

    with pytest.raises(OutputError):
        atomic_save.save_model(tiny_model(), out, overwrite=True, check=check)
    assert out.read_text() == "old" and listing(tmp_path) == ["out.keras"]


def test_keras_save_failure_leaves_nothing(tmp_path, monkeypatch):
    model = tiny_model()

    def broken_save(path, *args, **kwargs):
        pathlib.Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model, "save", broken_save)
    with pytest.raises(OutputError, match="writing failed: No space left on device"):
        atomic_save.save_model(model, tmp_path / "out.keras")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("make_path, fragment", [
    (lambda d: d / "missing" / "out.keras", "does not exist"),
    (lambda d: d / "file.txt" / "out.keras", "is not a folder"),
    (lambda d: d / "out.h5", "expected a name ending in .keras"),
    (lambda d: d / "sub.keras", "is a folder"),
])
def test_unusable_output_paths(tmp_path, make_path, fragment):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "sub.keras").mkdir()
    path = make_path(tmp_path)
    with pytest.raises(OutputError) as info:
        atomic_save.save_model(tiny_model(), path)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value)
    assert listing(tmp_path) == ["file.txt", "sub.keras"]


def test_unwritable_folder(tmp_path, monkeypatch):
    # As root, permission bits do not stop writes; fake what a read-only folder reports.
    monkeypatch.setattr(atomic_save.os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match="is not writable"):
        atomic_save.check_output_path(tmp_path / "out.keras")


def test_output_that_is_the_input_is_refused_even_with_overwrite(saved):
    with pytest.raises(OutputError, match="is the input file; refusing"):
        atomic_save.check_output_path(saved[0], overwrite=True, input_paths=[saved[0]])




# --------------------------------------------------------------------------- leftovers


def zombie():
    """A child process that has ended but is not reaped yet: its id still answers kill(0)."""
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # Popen.poll would reap it: read /proc instead
        if atomic_save._zombie(child.pid):
            return child
        time.sleep(0.01)
    child.wait()
    pytest.skip("no /proc to see a zombie in")


def leftover(folder, pid, prefix=atomic_save.TEMP_PREFIX, lock=True, suffix="abc123"):
    path = folder / f"{prefix}{pid}-{suffix}"
    path.mkdir()
    (path / "model.keras").write_bytes(b"PK half a model")
    if lock:
        (path / atomic_save.LOCK_NAME).write_bytes(b"")
    return path


def test_a_leftover_is_removed_when_its_lock_is_free_although_its_id_runs(tmp_path):
    # The id is a running process's (reused, or another container's): only the lock tells.
    running = leftover(tmp_path, os.getppid())
    assert atomic_save.remove_stale_temporaries(tmp_path) == [running.name]
    assert listing(tmp_path) == []


def test_a_folder_whose_lock_is_held_is_kept(tmp_path):
    import fcntl

    held = leftover(tmp_path, 999_999_999)  # no such process: only the lock tells
    fd = os.open(held / atomic_save.LOCK_NAME, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as its (living) process does
        assert atomic_save.remove_stale_temporaries(tmp_path) == [] and held.exists()
    finally:
        os.close(fd)
    assert atomic_save.remove_stale_temporaries(tmp_path) == [held.name]


def test_a_zombies_folder_without_a_lock_is_removed(tmp_path):
    child = zombie()
    try:
        os.kill(child.pid, 0)  # what the check alone used to see: "alive"
        dead = leftover(tmp_path, child.pid, lock=False)
        alive = leftover(tmp_path, os.getppid(), lock=False, suffix="def456")
        assert atomic_save.remove_stale_temporaries(tmp_path) == [dead.name]
        assert listing(tmp_path) == [alive.name]
    finally:
        child.wait()


def test_a_folder_with_this_process_id_is_a_leftover_unless_this_process_made_it(tmp_path):
    # A container's first process is 1 in every run: the folder of the previous run has this
    # process's id.
    earlier = leftover(tmp_path, os.getpid())
    young = leftover(tmp_path, os.getpid(), lock=False, suffix="young")
    mine, lock = atomic_save._make_locked_folder(atomic_save.TEMP_PREFIX, tmp_path)
    try:
        assert atomic_save.remove_stale_temporaries(tmp_path) == [earlier.name]
        assert sorted(listing(tmp_path)) == sorted([young.name, os.path.basename(mine)])
        old = atomic_save.time.time() - 2 * atomic_save.LOCK_GRACE_SECONDS
        os.utime(young, (old, old))  # no lock and old: no process is making it any more
        assert atomic_save.remove_stale_temporaries(tmp_path) == [young.name]
    finally:
        atomic_save._remove_locked_folder(mine, lock)
    assert listing(tmp_path) == []


def test_write_file_and_scratch_folder_hold_their_lock_while_they_run(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    child = zombie()
    try:
        stale_scratch = leftover(tmp_path, child.pid, prefix=atomic_save.SCRATCH_PREFIX)
        seen = []

        def write(tmp):
            folder = os.path.dirname(tmp)
            seen.append(sorted(os.listdir(folder)))
            # another process cleaning this folder now finds the lock taken
            assert atomic_save._lock_if_stale(folder, os.getpid() + 1) is False
            pathlib.Path(tmp).write_bytes(b"content")

        with atomic_save.scratch_folder() as scratch:
            assert not stale_scratch.exists()
            assert atomic_save._lock_if_stale(scratch, os.getpid() + 1) is False
            atomic_save.write_file(tmp_path / "out.txt", write)
        assert seen == [[atomic_save.LOCK_NAME]]
        assert listing(tmp_path) == ["out.txt"]
    finally:
        child.wait()
