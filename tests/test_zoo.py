"""The real-model zoo (tests/zoo.py): every check on every model, one test function per check.

Slow (run in CI; ``-m "not slow"`` skips them). Each model is built once, by a module-scoped
fixture parametrized over the zoo: pytest then runs all checks of one model before building
the next, and drops it afterwards. The fit check trains a fresh build, so the shared model is
never modified. A check that does not apply to a model is skipped with the reason.
"""
import os

import pytest

import zoo


@pytest.fixture(scope="module", params=zoo.NAMES)
def zoo_model(request):
    name = request.param
    zoo.get(name)  # built here, so a model that does not build errors all its checks at once
    yield name
    zoo.clear_cache()


# The costly checks (an export, a mixed-precision build, a fit, two CLI runs per model) run on
# zoo.QUICK in the test suite, to keep CI under 30 minutes; identity, passes, L2 and save/load
# run on every model. KERAS_REWRITE_FULL_ZOO=1, or tools/zoo_table.py, runs all of them.
COSTLY = {"export", "mixed_precision", "fit_callback", "cli"}
FULL = os.environ.get("KERAS_REWRITE_FULL_ZOO") == "1"


def _run(check, name, tmp_path=None):
    if check in COSTLY and not FULL and name not in zoo.QUICK:
        pytest.skip(f"{name}: {check} runs on zoo.QUICK in the suite (KERAS_REWRITE_FULL_ZOO=1 "
                    "or tools/zoo_table.py for every model)")
    try:
        zoo.run_check(check, name, tmp_path)
    except zoo.NotApplicable as exc:
        pytest.skip(f"{name}: {check} does not apply: {exc}")
    except Exception as exc:
        # Under KERAS_BACKEND=jax|torch, what that backend's Keras cannot do at all (never
        # on TensorFlow, the reference; see zoo.backend_limitation).
        reason = zoo.backend_limitation(exc)
        if reason is None:
            raise
        pytest.skip(f"{name}: {check}: {reason}")


def test_backend_limitations_excuse_nothing_on_tensorflow_and_only_what_they_name(monkeypatch):
    error = ValueError("Exception encountered when calling Functional.call().\n"
                       "Invalid dtype: str192")
    monkeypatch.setattr(zoo.keras.backend, "backend", lambda: "tensorflow")
    assert zoo.backend_limitation(error) is None
    monkeypatch.setattr(zoo.keras.backend, "backend", lambda: "torch")
    assert zoo.backend_limitation(error).startswith("Keras on torch: no string tensors")
    assert zoo.backend_limitation(AssertionError("identity rewrite is not an exact copy")) is None


@pytest.mark.slow
def test_zoo_is_complete():
    sources = {}
    for entry in zoo.ZOO.values():
        sources[entry.source] = sources.get(entry.source, 0) + 1
    assert len(zoo.ZOO) >= 45, sources
    assert sources["KerasHub"] >= 15, sources
    assert sources["KerasHub, quantized or LoRA"] >= 5, sources
    assert sources["keras.applications"] >= 14, sources
    assert sources["preprocessing"] == 5, sources


@pytest.mark.slow
def test_identity_rewrite_is_exact(zoo_model):
    """rewrite(model): same class, bit-identical outputs (dict keys kept), same configs and
    weights layer by layer."""
    _run("identity", zoo_model)


@pytest.mark.slow
def test_state_is_kept(zoo_model):
    """rewrite(model): every variable and layer state kept (quantized, LoRA, frozen)."""
    _run("state", zoo_model)


@pytest.mark.slow
def test_all_passes(zoo_model):
    """l2 + spatial_dropout + reorder run; outputs equal where the report says unchanged."""
    _run("passes", zoo_model)


@pytest.mark.slow
def test_l2_covers_every_kernel(zoo_model):
    """rewrite(model, ["l2"]) regularizes every trainable kernel, sublayers' included."""
    _run("l2_coverage", zoo_model)


@pytest.mark.slow
def test_save_load_keeps_outputs_and_l2(zoo_model, tmp_path):
    """The l2-rewritten model saved as .keras and loaded: same outputs, same L2 factors."""
    _run("save_load", zoo_model, tmp_path)


@pytest.mark.slow
def test_export_passes_keep_outputs_and_save(zoo_model, tmp_path):
    """fold_batchnorm + strip_inference: outputs equal up to rounding; the file reloads."""
    _run("export", zoo_model, tmp_path)


@pytest.mark.slow
def test_mixed_precision_policies_and_save(zoo_model, tmp_path):
    """SetDtypePolicy("mixed_bfloat16"): every layer's policy or a reason, float32 variables,
    and the file reloads with the same policies and outputs."""
    _run("mixed_precision", zoo_model, tmp_path)


@pytest.mark.slow
def test_fit_with_rewrite_callback(zoo_model):
    """One fit step of a fresh build with RewriteCallback(["l2"])."""
    _run("fit_callback", zoo_model)


@pytest.mark.slow
def test_cli_convert_and_lint(zoo_model, tmp_path):
    """keras-rewrite convert --l2 1e-4 exits 0; keras-rewrite lint exits 0 or 1."""
    _run("cli", zoo_model, tmp_path)


@pytest.mark.slow
def test_cli_subprocess_with_custom_objects_file(tmp_path):
    """The installed command in its own process, the zoo's layers registered through
    --custom-objects PATH (the in-process checks above import the module by name)."""
    import pathlib
    import subprocess
    import sys

    model, _ = zoo.build("siamese_registered_distance")
    src, dst = tmp_path / "in.keras", tmp_path / "out.keras"
    model.save(src)
    zoo_file = pathlib.Path(zoo.__file__)
    base = [sys.executable, "-m", "keras_rewrite"]
    done = subprocess.run(base + ["convert", str(src), "-o", str(dst), "--l2", "1e-4",
                                  "--custom-objects", str(zoo_file)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert dst.is_file()
    done = subprocess.run(base + ["lint", str(src), "--custom-objects", str(zoo_file)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    # Without the module, the registered distance function is unknown: exit 3.
    done = subprocess.run(base + ["lint", str(src)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 3, done.stderr
