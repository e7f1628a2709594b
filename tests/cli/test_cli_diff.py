"""`keras-rewrite diff A B` and the pictures of `convert --picture` and `inspect --picture`,
through the command line's entry point (in-process; one subprocess for the console script)."""
import json
import pathlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import keras
import numpy as np
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite.cli import entry
from keras_rewrite.cli import status

ERROR = "keras-rewrite: error: "
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diff_models")
    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 3), name="x")
    x = layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Dropout(0.3, name="drop")(x)
    model = keras.Model(inputs, layers.Dense(2, name="head")(layers.Flatten(name="flat")(x)),
                        name="m")
    model.get_layer("bn").set_weights([rng.uniform(0.5, 2, 4).astype("float32")
                                       for _ in range(4)])
    model.save(folder / "a.keras")
    new = keras_rewrite.rewrite(model, ["fold_batchnorm", "l2", "spatial_dropout"])
    new.save(folder / "b.keras")
    np.savez(folder / "kernels.npz", old=model.get_layer("conv").kernel.numpy(),
             new=new.get_layer("conv").kernel.numpy())
    return folder


def call(argv, capsys, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    code = entry.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_identical_models_exit_0(files, capsys, monkeypatch):
    code, out, err = call(["diff", "a.keras", "a.keras"], capsys, files, monkeypatch)
    assert (code, err) == (status.EXIT_OK, "")
    assert out == "a.keras -> a.keras: identical (7 layers compared)\n"


def test_different_models_exit_1_with_a_line_per_layer_and_a_picture(files, tmp_path,
                                                                     capsys, monkeypatch):
    for name in ("a.keras", "b.keras"):
        shutil.copy(files / name, tmp_path / name)
    code, out, err = call(["diff", "a.keras", "b.keras", "--picture", "d.svg"], capsys,
                          tmp_path, monkeypatch)
    assert (code, err) == (status.EXIT_DIFFERENT, "")
    kernels = np.load(files / "kernels.npz")
    expected = np.max(np.abs(kernels["new"].astype(np.float64) - kernels["old"]))
    lines = out.splitlines()
    assert lines[0] == ("a.keras -> b.keras: 4 of 7 layers differ (removed 1, config 3, "
                        "weights 1)")
    assert lines[1] == ("~ conv (Conv2D)  config: use_bias False -> True, kernel_regularizer "
                        "None -> L2(l2=0.0001); weights: kernel max |diff| "
                        f"{expected:.3g}, bias added (4,)")
    assert lines[2:5] == ["- bn (BatchNormalization)  removed",
                          "~ drop (SpatialDropout2D)  config: class Dropout -> SpatialDropout2D",
                          "~ head (Dense)  config: kernel_regularizer None -> L2(l2=0.0001)"]
    assert lines[5].startswith("picture: wrote d.svg (") and len(lines) == 6
    root = ET.parse(tmp_path / "d.svg").getroot()
    marked = {g.get("data-id"): g.get("class") for g in root.iter(SVG + "g")
              if g.get("data-id")}
    assert marked["conv"] == "node changed-config changed-weights"
    assert marked["bn"] == "node removed" and marked["drop"] == "node changed-config"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.keras", "b.keras", "d.svg"]


def test_json_has_every_value(files, tmp_path, capsys, monkeypatch):
    code, out, err = call(["diff", files / "a.keras", files / "b.keras", "--format", "json",
                           "--picture", "d.html"], capsys, tmp_path, monkeypatch)
    assert code == status.EXIT_DIFFERENT and err == ""
    (line,) = out.splitlines()
    record = json.loads(line)
    assert record["picture"] == "d.html" and (tmp_path / "d.html").exists()
    assert record["counts"] == {"added": 0, "removed": 1, "moved": 0, "config": 3,
                                "weights": 1}
    conv = record["layers"][0]
    kernels = np.load(files / "kernels.npz")
    assert conv["weights"][0]["max_abs_difference"] == float(
        np.max(np.abs(kernels["new"].astype(np.float64) - kernels["old"])))
    assert conv["config"][0] == {"key": "use_bias", "old": False, "new": True}


def test_an_existing_picture_is_kept_without_force(files, tmp_path, capsys, monkeypatch):
    (tmp_path / "d.html").write_text("precious")
    code, out, err = call(["diff", files / "a.keras", files / "b.keras", "--picture",
                           "d.html"], capsys, tmp_path, monkeypatch)
    assert code == status.EXIT_OUTPUT and out == ""  # refused before loading anything
    assert err == f"{ERROR}d.html: already exists; pass --force to overwrite it\n"
    assert (tmp_path / "d.html").read_text() == "precious"
    code, out, err = call(["diff", files / "a.keras", files / "b.keras", "--picture",
                           "d.html", "--force"], capsys, tmp_path, monkeypatch)
    assert code == status.EXIT_DIFFERENT
    assert (tmp_path / "d.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("argv, code, fragment", [
    (["diff", "a.keras", "missing.keras"], status.EXIT_INPUT, "missing.keras: no such file"),
    (["diff", "a.keras", "a.keras", "--picture", "d.png"], status.EXIT_USAGE,
     "received 'd.png' (PNG is not drawn: open the .svg or .html in a browser)"),
    (["diff", "a.keras", "a.keras", "--picture", "nowhere/d.svg"], status.EXIT_OUTPUT,
     "the folder 'nowhere' does not exist"),
])
def test_errors_are_one_line(files, capsys, monkeypatch, argv, code, fragment):
    got, out, err = call(argv, capsys, files, monkeypatch)
    assert got == code and out == ""
    assert err.count("\n") == 1 and err.startswith(ERROR) and fragment in err


def test_convert_and_inspect_draw_without_graphviz(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "")  # no `dot` anywhere
    code, out, err = call(["convert", files / "a.keras", "--dry-run", "--fold-batchnorm",
                           "--picture", "c.html"], capsys, tmp_path, monkeypatch)
    assert code == status.EXIT_OK, err
    assert "picture: wrote c.html (" in out and "2 changed layers marked" in out
    page = (tmp_path / "c.html").read_text()
    assert 'class="node removed"' in page and 'data-layer="bn"' in page
    code, out, err = call(["inspect", files / "a.keras", "--picture", "i.svg"], capsys,
                          tmp_path, monkeypatch)
    assert code == status.EXIT_OK, err
    ids = {g.get("data-id") for g in ET.parse(tmp_path / "i.svg").getroot().iter(SVG + "g")}
    assert {"x", "conv", "bn", "relu", "drop", "flat", "head", "output:0"} <= ids


@pytest.mark.slow  # a subprocess: TensorFlow's start-up
def test_the_console_script(files, tmp_path):
    exe = pathlib.Path(sys.executable).parent / "keras-rewrite"
    command = [str(exe) if exe.exists() else shutil.which("keras-rewrite")]
    done = subprocess.run(command + ["diff", str(files / "a.keras"), str(files / "b.keras"),
                                     "--picture", "d.html"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == status.EXIT_DIFFERENT and done.stderr == ""
    assert "4 of 7 layers differ" in done.stdout and (tmp_path / "d.html").exists()
