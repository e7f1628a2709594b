"""keras_rewrite.atomic_save: complete files or none, exclusive names, nothing left behind."""
import os
import pathlib
import stat
import zipfile

import pytest

from keras_rewrite import atomic_save
from keras_rewrite.atomic_save import OutputError
from keras_rewrite.model_files import load_model
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


