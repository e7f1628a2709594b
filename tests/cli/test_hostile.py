"""Hostile inputs, as an attacker or an unlucky user would give them: code that tries to run,
file-system traps, races, faults and signals, odd names, library misuse. Each finding of
issue 11 has a test here; the README's exit-status table points at them."""
import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import keras
import pytest
from keras import layers

import keras_rewrite
from keras_rewrite import conversion
from keras_rewrite.files import atomic_save
from keras_rewrite.files import model_files
from keras_rewrite.errors import RewriteError
from keras_rewrite.cli import entry
from keras_rewrite.cli import status

ERROR = "keras-rewrite: error: "


def small_model():
    inputs = keras.Input((3,), name="x")
    x = layers.Dense(4, name="dense")(inputs)
    return keras.Model(inputs, layers.Dropout(0.1, name="drop")(x), name="small")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "m.keras"
    small_model().save(path)
    return path


@pytest.fixture
def here(tmp_path, model_file, monkeypatch):
    """tmp_path as the current folder, holding m.keras; Keras's scratch folders go to
    tmp_path/tmp so that leftovers there are seen."""
    (tmp_path / "m.keras").write_bytes(model_file.read_bytes())
    (tmp_path / "tmp").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    return tmp_path


def call(argv, capsys):
    code = entry.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def listing(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir())


def one_error_line(err):
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), err
    return lines[0]


# --------------------------------------------------------------------------- code that runs


@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_a_keras_hub_package_in_the_current_folder_is_never_imported(tmp_path, model_file):
    # `python -m` puts the current folder first on sys.path, and Keras's deserializer imports
    # the modules a config names: a folder holding keras_hub/ would run its code.
    package = tmp_path / "keras_hub"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import pathlib\npathlib.Path(__file__).parent.parent.joinpath('PWNED').write_text('x')\n")
    with zipfile.ZipFile(model_file) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    config = json.loads(entries["config.json"])
    dense = next(l for l in config["config"]["layers"] if l["class_name"] == "Dense")
    dense["module"], dense["class_name"] = "keras_hub.layers", "Fake"
    dense["registered_name"] = "keras_hub>Fake"
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    done = subprocess.run([sys.executable, "-m", "keras_rewrite", "convert", "m.keras", "-o",
                           "out.keras"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert not (tmp_path / "PWNED").exists()
    assert done.returncode == status.EXIT_INPUT, done.stderr
    assert "unknown layer class 'Fake'" in one_error_line(done.stderr)


def keras_package_in(folder):
    """A `keras/` package in `folder` that leaves a mark when imported."""
    (folder / "keras").mkdir()
    (folder / "keras" / "__init__.py").write_text(
        "import pathlib\npathlib.Path(__file__).parent.parent.joinpath('PWNED').write_text('x')\n")


@pytest.mark.parametrize("command", [
    [str(pathlib.Path(sys.executable).parent / "keras-rewrite")],
    [sys.executable, "-m", "keras_rewrite_cli"],
    [sys.executable, "-m", "keras_rewrite"],
])
@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_a_keras_package_in_the_current_folder_is_never_imported(command, tmp_path, model_file):
    keras_package_in(tmp_path)
    (tmp_path / "m.keras").write_bytes(model_file.read_bytes())
    done = subprocess.run([*command, "convert", "m.keras", "-o", "out.keras", "--l2", "1e-4"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert not (tmp_path / "PWNED").exists()
    assert done.returncode == status.EXIT_OK, done.stderr
    assert "out.keras" in listing(tmp_path)


def test_sys_path_loses_the_current_folder_and_the_models_folder(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.keras").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", ".", str(tmp_path), str(models), "/usr/lib/python3"])
    removed = entry.safe_sys_path(["convert", "models/m.keras", "-o", "x.keras"])
    assert sys.path == ["/usr/lib/python3"] and len(removed) == 4


def test_a_custom_objects_module_calling_sys_exit_is_a_usage_error(here, capsys):
    (here / "quitter.py").write_text("import sys\nsys.exit(0)\n")
    code, out, err = call(["convert", "m.keras", "-o", "out.keras", "--custom-objects",
                           "quitter.py"], capsys)
    assert code == status.EXIT_USAGE
    assert "--custom-objects quitter.py: importing it called sys.exit(0)" in one_error_line(err)
    assert "out.keras" not in listing(here)


def test_a_dotted_custom_objects_module_is_found_in_the_current_folder_only_meanwhile(
        here, capsys):
    (here / "my_registry.py").write_text("VALUE = 1\n")
    before = list(sys.path)
    model_files.import_custom_objects("my_registry", search_folder=str(here))
    assert sys.path == before and "my_registry" in sys.modules


# --------------------------------------------------------------------------- malicious files


def test_a_deeply_nested_config_is_an_input_error(here, capsys):
    with zipfile.ZipFile(here / "m.keras") as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    text = entries["config.json"].decode()
    deep = text.replace('"config": {', '"config": {"deep": ' + "[" * 5000 + "]" * 5000 + ", ", 1)
    with zipfile.ZipFile(here / "deep.keras", "w") as archive:
        for name, data in {**entries, "config.json": deep}.items():
            archive.writestr(name, data)
    code, out, err = call(["convert", "deep.keras", "-o", "out.keras"], capsys)
    assert code == status.EXIT_INPUT
    line = one_error_line(err)
    assert "its config.json is nested 5002 levels deep; expected at most 100" in line
    assert line.endswith("raise it with --max-config-depth N if you trust this file")
    assert listing(here) == ["deep.keras", "m.keras", "tmp"]
    code, out, err = call(["convert", "deep.keras", "-o", "out.keras", "--max-config-depth",
                           "6000"], capsys)  # raised, but past what Python's parser reads
    assert code == status.EXIT_INPUT
    assert "nested 5002 levels deep, more than Python's JSON parser" in one_error_line(err)
    deep = text.replace('"config": {', '"config": {"deep": ' + "[" * 150 + "]" * 150 + ", ", 1)
    with zipfile.ZipFile(here / "deep.keras", "w") as archive:
        for name, data in {**entries, "config.json": deep}.items():
            archive.writestr(name, data)
    code, out, err = call(["convert", "deep.keras", "-o", "out.keras"], capsys)
    assert code == status.EXIT_INPUT and "nested 152 levels deep" in one_error_line(err)
    code, out, err = call(["convert", "deep.keras", "-o", "out.keras", "--max-config-depth",
                           "152"], capsys)
    assert code == status.EXIT_OK, err


@pytest.mark.parametrize("command", [
    ["convert", "m.keras", "-o", "out.keras"], ["lint", "m.keras"], ["inspect", "m.keras"],
    ["diff", "m.keras", "m.keras"], ["lint", "m.keras", "--fix", "-o", "out.keras"],
])
@pytest.mark.parametrize("flag, value, fragment", [
    ("--max-layers", "2", "its config.json holds 3 layers; expected at most 2"),
    ("--max-config-mb", "0.001", "its config.json is 0.0 MiB (1,"),
    ("--max-config-depth", "5", "its config.json is nested 10 levels deep; expected at most 5"),
])
def test_a_file_past_a_limit_is_exit_3_naming_the_limit_and_its_flag(here, capsys, monkeypatch,
                                                                      command, flag, value,
                                                                      fragment):
    def never(*args, **kwargs):
        raise AssertionError("Keras was given the file")

    monkeypatch.setattr(keras.saving, "load_model", never)
    code, out, err = call([*command, flag, value], capsys)
    line = one_error_line(err)
    assert code == status.EXIT_INPUT and fragment in line, line
    assert line.endswith(f"raise it with {flag} N if you trust this file"), line
    assert listing(here) == ["m.keras", "tmp"]


def test_the_command_lines_limits_are_the_librarys():
    from keras_rewrite.cli import arguments

    assert model_files.FileLimits(**arguments.LIMIT_DEFAULTS) == model_files.FileLimits()
    assert set(arguments.LIMIT_FLAGS) == set(model_files.LIMIT_HINTS)
    code = entry.main(["convert", "m.keras", "--max-layers", "0"])
    assert code == status.EXIT_USAGE


# Runs argv in a child and prints that child's peak RSS (KiB; one child: no other's maximum).
PEAK_RSS = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); sys.stderr.buffer.write("
            "done.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
            "done.returncode)")


def peak_rss_mib(argv, cwd):
    env = {**os.environ, "TMPDIR": str(cwd / "tmp"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    kib, code = done.stdout.split()
    return int(kib) / 1024, int(code), done.stderr


@pytest.mark.slow  # four processes importing TensorFlow, a 40 MB config
def test_a_config_of_tens_of_mb_costs_convert_little_more_than_keras_and_a_limit_stops_it(here):
    # An attacker's file: a valid config with a 40 MiB string under a key Keras ignores. The
    # checks used to multiply it (a backtracking regex: ~130 bytes per byte; 200 MB -> killed).
    with zipfile.ZipFile(here / "m.keras") as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    config = json.loads(entries["config.json"])
    config["ignored_by_keras"] = "x" * (40 << 20)
    with zipfile.ZipFile(here / "big.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in {**entries, "config.json": json.dumps(config).encode()}.items():
            archive.writestr(name, data)
    del config
    python = sys.executable
    imports, _, _ = peak_rss_mib([python, "-c", "import keras"], here)
    keras_load, code, err = peak_rss_mib(
        [python, "-c", "import keras; keras.saving.load_model('big.keras')"], here)
    assert code == 0, err
    convert, code, err = peak_rss_mib([python, "-m", "keras_rewrite_cli", "convert",
                                       "big.keras", "-o", "out.keras"], here)
    assert code == status.EXIT_OK, err
    assert convert <= 1.5 * keras_load, (convert, keras_load)
    # what convert adds to Keras's own load, at most half of what that load costs
    assert convert - keras_load <= 0.5 * (keras_load - imports), (imports, keras_load, convert)
    refused, code, err = peak_rss_mib([python, "-m", "keras_rewrite_cli", "convert",
                                       "big.keras", "-o", "refused.keras",
                                       "--max-config-mb", "32"], here)
    assert code == status.EXIT_INPUT
    line = one_error_line(err)
    assert "big.keras: its config.json is 40.0 MiB (" in line
    assert "expected at most 32 MiB" in line and line.endswith(
        "raise it with --max-config-mb N if you trust this file")
    assert refused < imports + 0.25 * (keras_load - imports)  # never reached Keras
    assert listing(here) == ["big.keras", "m.keras", "out.keras", "tmp"]
    assert listing(here / "tmp") == []


def test_a_deeply_nested_passes_file_is_a_usage_error(here, capsys):
    (here / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    code, out, err = call(["convert", "m.keras", "-o", "out.keras", "--passes", "deep.toml"],
                          capsys)
    assert code == status.EXIT_USAGE
    assert "--passes deep.toml: nested too deeply to read" in one_error_line(err)


def test_an_odd_file_name_is_quoted_in_the_one_line_error(here, capsys):
    code, out, err = call(["convert", "bad\nname.keras", "-o", "out.keras"], capsys)
    assert code == status.EXIT_INPUT
    assert one_error_line(err) == (f"{ERROR}'bad\\nname.keras': no such file; expected an "
                                   "existing .keras model file")


# --------------------------------------------------------------------------- file-system traps


@pytest.mark.parametrize("command", [
    ["convert", "m.keras", "--dry-run", "--diff-svg", "pic.dot"],
    ["inspect", "m.keras", "--svg", "pic.dot"],
])
def test_an_existing_picture_is_not_overwritten_without_force(here, capsys, command):
    (here / "pic.dot").write_text("precious")
    code, out, err = call(command, capsys)
    assert code == status.EXIT_OUTPUT
    assert "pic.dot: already exists; pass --force to overwrite it" in one_error_line(err)
    assert (here / "pic.dot").read_text() == "precious"
    code, out, err = call(command + ["--force"], capsys)
    assert code == status.EXIT_OK, err
    assert (here / "pic.dot").read_text().startswith("digraph")


@pytest.mark.parametrize("command", [
    ["convert", "m.keras", "--dry-run", "--diff-svg", "pic.dot", "--force"],
    ["inspect", "m.keras", "--svg", "pic.dot", "--force"],
    ["convert", "m.keras", "-o", "pic.keras", "--force"],
])
def test_a_symlink_is_replaced_never_written_through(here, capsys, command):
    elsewhere = here / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim.keras"
    victim.write_bytes(b"someone else's model")
    target = command[command.index("--force") - 1]
    (here / target).symlink_to(victim)
    code, out, err = call(command, capsys)
    assert code == status.EXIT_OK, err
    assert victim.read_bytes() == b"someone else's model"
    assert not (here / target).is_symlink() and (here / target).stat().st_size > 0


def test_a_symlink_output_without_force_is_refused(here, capsys):
    (here / "out.keras").symlink_to(here / "nowhere.keras")
    code, out, err = call(["convert", "m.keras", "-o", "out.keras"], capsys)
    assert code == status.EXIT_OUTPUT and "already exists" in one_error_line(err)
    assert not (here / "nowhere.keras").exists()


def test_a_protected_existing_output_with_force_is_exit_5(here, capsys, monkeypatch):
    (here / "out.keras").write_bytes(b"immutable")

    def refuse(src, dst, *args, **kwargs):  # what chattr +i gives (root cannot chattr here)
        raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))

    monkeypatch.setattr(atomic_save.os, "replace", refuse)
    code, out, err = call(["convert", "m.keras", "-o", "out.keras", "--force"], capsys)
    assert code == status.EXIT_OUTPUT
    assert "out.keras: cannot be given its final name: Operation not permitted; the existing " \
           "file is protected" in one_error_line(err)
    assert (here / "out.keras").read_bytes() == b"immutable"
    assert listing(here) == ["m.keras", "out.keras", "tmp"] and listing(here / "tmp") == []


def test_a_250_character_output_name_works(here, capsys):
    name = "n" * 244 + ".keras"
    code, out, err = call(["convert", "m.keras", "-o", name], capsys)
    assert code == status.EXIT_OK, err
    assert (here / name).is_file()
    code, out, err = call(["convert", "m.keras", "-o", "n" * 250 + ".keras"], capsys)
    assert code == status.EXIT_OUTPUT and "expected at most 255" in one_error_line(err)


# --------------------------------------------------------------------------- races, leftovers


def test_two_writers_of_one_new_output_exactly_one_wins(here, capsys, monkeypatch):
    # The other run's file appears while this one reloads and checks its own.
    real = conversion.check_written

    def meanwhile(tmp, output, *args, **kwargs):
        real(tmp, output, *args, **kwargs)
        pathlib.Path(output).write_bytes(b"the other run's output")

    monkeypatch.setattr(conversion, "check_written", meanwhile)
    code, out, err = call(["convert", "m.keras", "-o", "out.keras"], capsys)
    assert code == status.EXIT_OUTPUT
    assert "out.keras: already exists (another process wrote it meanwhile)" in \
        one_error_line(err)
    assert (here / "out.keras").read_bytes() == b"the other run's output"
    assert listing(here) == ["m.keras", "out.keras", "tmp"]


def test_temporary_names_are_no_models_and_stale_ones_are_removed(here, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = here / f"{atomic_save.TEMP_PREFIX}{dead}-abc123"
    stale.mkdir()
    (stale / "model.keras").write_bytes(b"half a model, left by SIGKILL")
    live = here / f"{atomic_save.TEMP_PREFIX}{os.getppid()}-def456"  # a running process's
    live.mkdir()
    code, out, err = call(["convert", "m.keras", "-o", "out.keras"], capsys)
    assert code == status.EXIT_OK, err
    assert not stale.exists() and live.exists()
    live.rmdir()
    assert listing(here) == ["m.keras", "out.keras", "tmp"] and listing(here / "tmp") == []


@pytest.mark.parametrize("fault", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EFBIG, "File too large"),
    KeyboardInterrupt(),
])
def test_faults_while_saving_leave_nothing_anywhere(here, capsys, monkeypatch, fault):
    def failing_save(self, filepath, *args, **kwargs):
        pathlib.Path(filepath).write_bytes(b"PK partial")
        import tempfile
        pathlib.Path(tempfile.mkdtemp()).joinpath("keras-extract").write_text("x")
        raise fault

    monkeypatch.setattr(keras.Model, "save", failing_save)
    code, out, err = call(["convert", "m.keras", "-o", "out.keras"], capsys)
    expected = (status.EXIT_INTERRUPTED if isinstance(fault, KeyboardInterrupt)
                else status.EXIT_OUTPUT)
    assert code == expected and len(err.splitlines()) == 1, err
    assert listing(here) == ["m.keras", "tmp"] and listing(here / "tmp") == []


SIGNAL_SCRIPT = textwrap.dedent("""\
    import os, signal, sys
    import keras_rewrite  # quiets TensorFlow, as the command line does
    import keras
    real = keras.Model.save
    def save(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)
        os.kill(os.getpid(), signal.{name})   # at the worst moment: written, not yet checked
    keras.Model.save = save
    sys.argv = ["keras-rewrite", "convert", "m.keras", "-o", "out.keras"]
    from keras_rewrite.cli.entry import run
    run()
""")


@pytest.mark.parametrize("name, code", [("SIGINT", 130), ("SIGTERM", 143)])
@pytest.mark.slow  # a subprocess or a full example: seconds, run in CI
def test_signals_end_with_their_status_one_line_and_nothing_left(here, name, code):
    env = {**os.environ, "TMPDIR": str(here / "tmp")}
    done = subprocess.run([sys.executable, "-c", SIGNAL_SCRIPT.format(name=name)], cwd=here,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == code, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "no partial output was left" in done.stderr
    assert listing(here) == ["m.keras", "tmp"] and listing(here / "tmp") == []


KILLED_SCRIPT = textwrap.dedent("""\
    import sys, time
    import keras_rewrite  # quiets TensorFlow, as the command line does
    import keras
    def save(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK half a model")
        print("writing", flush=True)
        time.sleep(600)  # killed here, mid-write
    keras.Model.save = save
    sys.argv = ["keras-rewrite", "convert", "m.keras", "-o", "out.keras"]
    from keras_rewrite.cli.entry import run
    run()
""")


@pytest.mark.slow  # two command-line runs in subprocesses
def test_the_next_run_removes_what_a_convert_killed_with_sigkill_mid_write_left(here):
    env = {**os.environ, "TMPDIR": str(here / "tmp")}
    killed = subprocess.Popen([sys.executable, "-c", KILLED_SCRIPT], cwd=here, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert killed.stdout.readline().strip() == "writing"
        killed.send_signal(signal.SIGKILL)
        # Not reaped yet, as by a supervisor that has not waited for it: a zombie, whose
        # process id still answers os.kill(pid, 0).
        while pathlib.Path(f"/proc/{killed.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] \
                != "Z":
            time.sleep(0.01)
        left = listing(here)
        assert [n for n in left if n.startswith(atomic_save.TEMP_PREFIX)] == \
            [n for n in left if n.startswith(f"{atomic_save.TEMP_PREFIX}{killed.pid}-")]
        assert len(left) == 3 and len(listing(here / "tmp")) == 1  # its scratch folder
        (partial,) = [n for n in left if n.startswith(atomic_save.TEMP_PREFIX)]
        assert (here / partial / "model.keras").read_bytes() == b"PK half a model"
        done = subprocess.run([sys.executable, "-m", "keras_rewrite_cli", "convert", "m.keras",
                               "-o", "out.keras"], cwd=here, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert listing(here) == ["m.keras", "out.keras", "tmp"]
        assert listing(here / "tmp") == []
    finally:
        killed.kill()
        killed.wait()


# --------------------------------------------------------------------------- library misuse


@pytest.mark.parametrize("passes", [None, 3, 2.5, {"l2": 1}])
def test_rewrite_with_passes_of_the_wrong_type_is_a_rewrite_error(passes):
    with pytest.raises(RewriteError, match="expected passes as a list of passes"):
        keras_rewrite.rewrite(small_model(), passes)


def test_convert_file_does_what_convert_does(model_file, tmp_path):
    report = keras_rewrite.convert_file(model_file, tmp_path / "out.keras", ["l2"])
    assert report.written and report.checked and report.outputs == "unchanged"
    assert report.passes[0].modified and report.changed_layers == ["dense"]
    assert json.loads(json.dumps(report.to_dict()))["weights"]["carried"] == 2
    with pytest.raises(atomic_save.OutputError, match="already exists; pass overwrite=True"):
        keras_rewrite.convert_file(model_file, tmp_path / "out.keras", ["l2"])
    assert listing(tmp_path) == ["out.keras"]


@pytest.mark.slow
def test_sigterm_during_a_jobs_batch_ends_143_and_leaves_no_partial_output(here):
    batch = here / "models"
    batch.mkdir()
    for i in range(6):
        (batch / f"m{i}.keras").write_bytes((here / "m.keras").read_bytes())
    env = {**os.environ, "TMPDIR": str(here / "tmp")}
    keras_rewrite_cmd = str(pathlib.Path(sys.executable).parent / "keras-rewrite")
    proc = subprocess.Popen([keras_rewrite_cmd, "convert", "models", "-o", "out", "--l2", "1e-4",
                             "--jobs", "2"], cwd=here, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((here / "out").glob("*")):
        time.sleep(0.2)  # workers at work: the output folder has its first entry
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    leftovers = [p for p in (here / "out").rglob("*") if not p.name.endswith(".keras")
                 or p.parent != here / "out"]
    assert leftovers == [] and listing(here / "tmp") == []
    assert all(p.stem in {f"m{i}" for i in range(6)} for p in (here / "out").iterdir())
