"""keras_rewrite.model_files: file checks with precise errors, safe loading, custom objects."""
import os
import pathlib
import stat
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest
from keras import layers

from keras_rewrite import model_files as io
from keras_rewrite.model_files import CustomObjectsError, ModelFileError
from keras_rewrite.verify import predict
from helpers import tiny_model

BUNDLED = pathlib.Path(io.__file__).parent / "data" / "seed_unet.keras"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small valid .keras file and its entries, for making broken copies."""
    folder = tmp_path_factory.mktemp("io")
    path = folder / "good.keras"
    tiny_model().save(path)
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    return path, entries


def write_zip(path, entries):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def expect_error(path, *fragments, **kwargs):
    with pytest.raises(ModelFileError) as info:
        io.check_model_file(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------- check_model_file


def test_valid_file_is_accepted(saved):
    info = io.check_model_file(saved[0])
    assert info.format == "keras" and info.config["class_name"] == "Functional"
    assert info.lambda_bytecode == [] and info.layers_of_class("Conv2D") == ["conv"]


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.keras", "no such file", "expected an existing .keras")


def test_folder_instead_of_file(tmp_path):
    expect_error(tmp_path, "is a folder", "expected a .keras model file")


def test_broken_symlink(tmp_path):
    link = tmp_path / "link.keras"
    link.symlink_to(tmp_path / "gone.keras")
    expect_error(link, "broken symbolic link")


def test_empty_file(tmp_path):
    (tmp_path / "empty.keras").write_bytes(b"")
    expect_error(tmp_path / "empty.keras", "is empty (0 bytes)", "expected a .keras zip")


def test_text_file_named_keras(tmp_path):
    (tmp_path / "notes.keras").write_text("just some notes\nmore\n")
    expect_error(tmp_path / "notes.keras", "is not a zip archive",
                 "received a text file starting with 'just some notes more'")


def test_binary_garbage(tmp_path):
    (tmp_path / "noise.keras").write_bytes(bytes(range(200, 256)) * 3)
    expect_error(tmp_path / "noise.keras", "is not a zip archive", "binary data")


def test_truncated_zip(saved, tmp_path):
    data = saved[0].read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    expect_error(tmp_path / "cut.keras", "truncated or corrupted zip archive",
                 "end-of-archive record is missing")


def test_corrupted_entry(saved, tmp_path):
    data = bytearray(saved[0].read_bytes())
    # Flip bytes inside the weights entry (stored uncompressed, in the middle of the file).
    start = data.find(io.HDF5_SIGNATURE) + 600
    for i in range(start, start + 8):
        data[i] ^= 0xFF
    (tmp_path / "flipped.keras").write_bytes(bytes(data))
    expect_error(tmp_path / "flipped.keras", "'model.weights.h5' is corrupted", "CRC")


def test_zip_without_config(saved, tmp_path):
    entries = {k: v for k, v in saved[1].items() if k != "config.json"}
    path = write_zip(tmp_path / "noconfig.keras", entries)
    expect_error(path, "without config.json", "received metadata.json, model.weights.h5")


def test_plain_zip_of_other_files(tmp_path):
    path = write_zip(tmp_path / "photos.keras", {f"img{i}.jpg": b"x" for i in range(7)})
    expect_error(path, "without config.json", "and 2 more")


def test_zip_without_weights(saved, tmp_path):
    entries = {k: v for k, v in saved[1].items() if k != "model.weights.h5"}
    expect_error(write_zip(tmp_path / "now.keras", entries), "has no model.weights.h5")


def test_weights_entry_not_hdf5(saved, tmp_path):
    entries = {**saved[1], "model.weights.h5": b"not hdf5 at all"}
    expect_error(write_zip(tmp_path / "w.keras", entries), "is not an HDF5 file",
                 "text file starting with 'not hdf5 at all'")


@pytest.mark.parametrize("content, fragment", [
    (b"{oops", "is not valid JSON (line 1 column 2"),
    (b"\xff\xfe\x00", "is not UTF-8 text"),
    (b"[1, 2]", "does not describe a model; expected an object with 'class_name'"),
    (b'{"layers": []}', "received keys ['layers']"),
])
def test_bad_config(saved, tmp_path, content, fragment):
    entries = {**saved[1], "config.json": content}
    expect_error(write_zip(tmp_path / "cfg.keras", entries), fragment)


def test_wrong_suffix(saved, tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(saved[0].read_bytes())
    expect_error(path, "suffix '.zip'", "received a zip archive")


def test_hdf5_named_keras(tmp_path):
    h5py.File(tmp_path / "old.keras", "w").close()
    expect_error(tmp_path / "old.keras", "legacy HDF5 model named .keras", "rename it to .h5")


def test_legacy_h5_refused_unless_allowed(tmp_path):
    h5py.File(tmp_path / "old.h5", "w").close()
    expect_error(tmp_path / "old.h5", "legacy HDF5", "CVE-2025-9905", "safe_mode=False")
    assert io.check_model_file(tmp_path / "old.h5", allow_h5=True).format == "h5"


def test_h5_suffix_but_not_hdf5(tmp_path):
    (tmp_path / "fake.h5").write_text("hello")
    expect_error(tmp_path / "fake.h5", "is not an HDF5 file", allow_h5=True)


# --------------------------------------------------------------------------- load_model


@pytest.fixture(scope="module")
def lambda_file(tmp_path_factory):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layers.Lambda(lambda x: x / 255, name="scale")(inputs))
    path = tmp_path_factory.mktemp("lambda") / "lambda.keras"
    model.save(path)
    return path


def test_lambda_bytecode_refused_in_safe_mode(lambda_file):
    assert io.check_model_file(lambda_file).lambda_bytecode == ["scale"]
    with pytest.raises(ModelFileError) as info:
        io.load_model(lambda_file)
    message = str(info.value)
    assert "layer 'scale' (Lambda) holds Python bytecode" in message
    assert "safe_mode=False" in message and "\n" not in message


def test_lambda_bytecode_loads_when_unsafe(lambda_file):
    model = io.load_model(lambda_file, safe_mode=False)
    x = np.full((1, 3), 255.0, "float32")
    assert np.allclose(predict(model, x), 1.0)


def test_unknown_layer_class(saved, tmp_path):
    config = saved[1]["config.json"].replace(b'"Conv2D"', b'"Conv2DX"')
    path = write_zip(tmp_path / "unknown.keras", {**saved[1], "config.json": config})
    with pytest.raises(ModelFileError) as info:
        io.load_model(path)
    message = str(info.value)
    assert "unknown layer class 'Conv2DX' (layer 'conv')" in message
    assert "custom objects" in message and "\n" not in message


def test_unregistered_named_function(saved, tmp_path):
    inputs = keras.Input((3,))

    @keras.saving.register_keras_serializable(package="io_test")
    def halve(x):
        return x / 2

    path = tmp_path / "named.keras"
    keras.Model(inputs, layers.Lambda(halve, name="halve")(inputs)).save(path)
    keras.saving.get_custom_objects().pop("io_test>halve")  # as in a fresh process
    with pytest.raises(ModelFileError) as info:
        io.load_model(path)
    message = str(info.value)
    assert "layer 'halve' calls the function 'io_test>halve', which is not registered" in message
    assert "custom objects" in message


def test_bundled_demo_model_loads_in_safe_mode():
    info = io.check_model_file(BUNDLED)
    assert info.lambda_bytecode == []
    assert ("lambda", "keras_rewrite>divide_by_255") in info.named_functions
    model = io.load_model(BUNDLED, safe_mode=True)
    assert model.input_shape == (None, 64, 64, 3)
    assert BUNDLED.stat().st_size < 3_000_000


# --------------------------------------------------------------------------- custom objects


def test_import_custom_objects_from_path(tmp_path):
    module = tmp_path / "my_layers.py"
    module.write_text("import keras\n"
                      "@keras.saving.register_keras_serializable(package='io_test')\n"
                      "class Twice(keras.layers.Layer):\n"
                      "    def call(self, x):\n"
                      "        return 2 * x\n")
    io.import_custom_objects(str(module))
    assert keras.saving.get_registered_object("io_test>Twice") is not None


@pytest.mark.parametrize("spec, fragment", [
    ("no_such_module_xyz", "cannot import it (No module named 'no_such_module_xyz')"),
    ("missing/file.py", "no such file"),
])
def test_import_custom_objects_errors(spec, fragment):
    with pytest.raises(CustomObjectsError, match=None) as info:
        io.import_custom_objects(spec)
    assert str(info.value).startswith(f"{spec}: ")
    assert fragment in str(info.value)


def test_import_custom_objects_that_raise(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(CustomObjectsError, match="importing it raised RuntimeError: boom"):
        io.import_custom_objects(str(tmp_path / "broken.py"))


@pytest.mark.slow
def test_bundled_model_is_reproducible():
    # In a subprocess: the script resets Keras's session, which this test process keeps.
    script = BUNDLED.parent.parent.parent / "examples" / "make_bundled_model.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "up to date" in done.stdout, done.stdout + done.stderr
