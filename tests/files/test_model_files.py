"""keras_rewrite.files.model_files: file checks with precise errors, safe loading, custom objects."""
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

from keras_rewrite.files import model_files as io
from keras_rewrite.files.model_files import CustomObjectsError, ModelFileError
from keras_rewrite.verify import predict
from helpers import tiny_model

BUNDLED = pathlib.Path(io.__file__).parent.parent / "data" / "seed_unet.keras"


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


# --------------------------------------------------------------------------- limits


def with_config(saved, tmp_path, config, name="limited.keras"):
    import json

    return write_zip(tmp_path / name, {**saved[1], "config.json": json.dumps(config).encode()})


def good_config(saved):
    import json

    return json.loads(saved[1]["config.json"])


def test_the_default_limits_are_far_above_a_real_model(saved):
    info = io.check_model_file(saved[0], limits=io.FileLimits())
    assert io.FileLimits() == io.FileLimits(64, 100, 50_000)
    assert info.layers == [("x", "InputLayer"), ("conv", "Conv2D"), ("drop", "Dropout")]


def test_a_config_over_the_size_limit_is_refused_before_it_is_read(saved, tmp_path,
                                                                    monkeypatch):
    config = {**good_config(saved), "ignored_by_keras": "x" * (3 << 20)}  # 3 MiB
    path = with_config(saved, tmp_path, config)

    def no_reading(*args, **kwargs):
        raise AssertionError("read the archive's entries")

    monkeypatch.setattr(zipfile.ZipFile, "testzip", no_reading)
    monkeypatch.setattr(zipfile.ZipFile, "read", no_reading)
    monkeypatch.setattr(keras.saving, "load_model", no_reading)
    message = expect_error(path, "its config.json is 3.0 MiB (3,1", " bytes); expected at most "
                           "2 MiB", "raise it with limits=FileLimits(max_config_mb=N) if you "
                           "trust this file", limits=io.FileLimits(max_config_mb=2))
    with pytest.raises(ModelFileError) as info:
        io.load_model(path, limits=io.FileLimits(max_config_mb=2))  # Keras is never called
    assert str(info.value) == message
    monkeypatch.undo()
    assert io.check_model_file(path, limits=io.FileLimits(max_config_mb=4)).layers


def test_a_config_larger_than_its_archive_declares_is_refused(saved, tmp_path):
    import json

    config = json.dumps({**good_config(saved), "pad": "x" * 5000}).encode()
    path = write_zip(tmp_path / "lies.keras", {**saved[1], "config.json": config})
    data = bytearray(path.read_bytes())
    # Declare 100 bytes, in the local header and the central directory (uncompressed size).
    for header, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(header)
        while at != -1:
            name_at = at + (30 if header == b"PK\x03\x04" else 46)
            if data[name_at:name_at + 11] == b"config.json":
                data[at + offset:at + offset + 4] = (100).to_bytes(4, "little")
            at = data.find(header, at + 4)
    path.write_bytes(bytes(data))
    expect_error(path, "corrupted", limits=io.FileLimits(max_config_mb=0.001))


def test_a_config_nested_past_the_depth_limit_is_refused(saved, tmp_path):
    assert io.json_depth(saved[1]["config.json"]) == 10  # the model's own config
    config = {**good_config(saved), "deep": [[[[[[[[[[[[1]]]]]]]]]]]]}  # 1 + 12 levels
    path = with_config(saved, tmp_path, config)
    expect_error(path, "its config.json is nested 13 levels deep; expected at most 12",
                 "raise it with limits=FileLimits(max_config_depth=N)",
                 limits=io.FileLimits(max_config_depth=12))
    assert io.check_model_file(path, limits=io.FileLimits(max_config_depth=13)).config


def test_a_config_with_more_layers_than_the_limit_is_refused(saved, tmp_path):
    config = good_config(saved)
    nested = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "ReLU", "config": {}}, {"class_name": "ReLU", "config": {}}]}}
    config["config"]["layers"].append(nested)  # nested layers count too: 3 + 1 + 2
    path = with_config(saved, tmp_path, config)
    expect_error(path, "its config.json holds 6 layers; expected at most 5",
                 "raise it with limits=FileLimits(max_layers=N)",
                 limits=io.FileLimits(max_layers=5))
    assert io.check_model_file(path, limits=io.FileLimits(max_layers=6)).config


@pytest.mark.parametrize("text, depth", [
    ('{}', 1), ('[]', 1), ('"[[{"', 0), (r'["\\", ["\\\"[", {}]]', 3),
    (r'{"a\\": "\\\\", "b": [[["]"]]]}', 4), ('[' * 900 + ']' * 900, 900),
], ids=["object", "array", "brackets in a string", "escaped quotes", "escaped backslashes",
        "deep"])
def test_json_depth_reads_strings_and_escapes(text, depth):
    import json

    json.loads(text)  # each is valid JSON
    assert io.json_depth(text) == depth == io.json_depth(text.encode())
    assert io.json_depth("[" * 5000 + "]" * 5000) == 5000  # deeper than json.loads can go


def test_json_depth_across_its_steps_and_in_little_memory():
    import tracemalloc

    text = '{"a": "' + "[" * (io._CHUNK - 7) + '", "b": [[1]], "c": "' + "]" * 10 + '"}'
    assert io.json_depth(text) == 3  # a string running over a step's end
    data = ('{"k": "' + "x" * (32 << 20) + '"}').encode()  # 32 MiB in one string
    tracemalloc.start()
    try:
        assert io.json_depth(data) == 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # the backtracking regex it replaced held ~130 bytes per byte


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
