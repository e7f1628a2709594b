"""Loading and saving model files, with errors that say what is actually wrong.

Keras's own load errors mislead (see ../shared/KERAS_FACTS.md, "Saving and loading"): a
missing path, an empty file, a text file named ``.keras`` and a truncated archive all say
``File not found``; a zip without ``config.json`` raises KeyError; an unknown layer class
surfaces as "could not be deserialized properly" three exceptions deep. So `check_model_file`
looks at the file first (exists, is a regular file, not empty, a zip, entries intact,
``config.json`` parses, ``model.weights.h5`` present) and `load_model` then translates what
Keras still raises into one `ModelFileError` line naming the file, what was expected and what
was received.

Saving is atomic (`save_model`): the model is written to a hidden temporary file in the
destination folder, checked by the caller's `verify` (the command line reloads it and compares
it with the in-memory model, `keras_rewrite.verify.compare_models`), and only then renamed over
the destination with `os.replace`. On any failure, including Ctrl-C, neither the
destination nor the temporary file is left behind.

Safe by default: ``safe_mode=True`` refuses Lambda layers carrying Python bytecode (checked in
``config.json`` before Keras sees the file), and legacy ``.h5`` files are refused unless
``allow_h5=True``, because Keras ignores ``safe_mode`` for them (CVE-2025-9905).

Keras itself is imported inside the functions that need it, so importing this module is cheap.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import pathlib
import re
import sys
import tempfile
import zipfile

from .errors import RewriteError

__all__ = ["ModelFileError", "OutputError", "CustomObjectsError", "ModelFile",
           "check_model_file", "load_model", "save_model", "check_output_path",
           "import_custom_objects", "random_batch", "sample_batch", "first_paragraph",
           "layer_in_traceback"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
H5_SUFFIXES = (".h5", ".hdf5")
CONFIG_ENTRY = "config.json"
WEIGHTS_ENTRY = "model.weights.h5"
UNSAFE_HINT = "pass --unsafe if you trust this file"


class ModelFileError(RewriteError, ValueError):
    """A model file is missing, unreadable, not a Keras model, or refused by safe mode.

    Attributes:
        path: the file as the user named it.
        reason: what is wrong, what was expected and what was received (one line).
    """

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class OutputError(RewriteError, OSError):
    """The output file could not be written (exists, folder missing or not writable, the
    written file did not reload identically). Nothing was left at the destination."""

    def __init__(self, path, reason):
        RewriteError.__init__(self, f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __str__(self):
        return self.args[0]


class CustomObjectsError(RewriteError, ImportError):
    """The module given to register custom objects could not be imported."""


@dataclasses.dataclass
class ModelFile:
    """What `check_model_file` found out about a file without loading it with Keras.

    Attributes:
        path: the path as given.
        format: "keras" (a .keras zip archive) or "h5" (a legacy HDF5 file).
        config: the parsed ``config.json`` (None for .h5 files).
        lambda_bytecode: names of the layers whose config holds Python bytecode
            (a serialized ``lambda``), which safe mode refuses.
        named_functions: (layer name, registered function name such as
            ``"keras_rewrite>scale_to_unit"``) for each registered function a layer uses.
    """

    path: str
    format: str
    config: dict | None = None
    lambda_bytecode: list = dataclasses.field(default_factory=list)
    named_functions: list = dataclasses.field(default_factory=list)

    def layers_of_class(self, class_name: str) -> list[str]:
        """Names of the layers of `class_name` in the config (nested models included)."""
        return [name for name, cls in _layer_entries(self.config) if cls == class_name]


# --------------------------------------------------------------------------- checking a file


def check_model_file(path, *, allow_h5: bool = False) -> ModelFile:
    """Check that `path` is a readable Keras model file, without running any of its content.

    Args:
        path: a ``.keras`` file (or a legacy ``.h5`` file when `allow_h5`).
        allow_h5: accept legacy HDF5 files. They are refused by default because Keras
            ignores ``safe_mode`` when loading them.

    Returns:
        A `ModelFile` with the parsed config and the layers that need attention.

    Raises:
        ModelFileError: the one thing that is wrong, e.g. ``"is empty (0 bytes); expected a
            .keras zip archive"``.
    """
    p = pathlib.Path(path)
    if not os.path.lexists(p):
        raise ModelFileError(path, "no such file; expected an existing .keras model file")
    if not p.exists():
        raise ModelFileError(path, f"is a broken symbolic link (to {os.readlink(p)!r}); "
                                   "expected an existing .keras model file")
    if p.is_dir():
        raise ModelFileError(path, "is a folder; expected a .keras model file")
    if not p.is_file():
        raise ModelFileError(path, "is not a regular file (a device, pipe or socket); "
                                   "expected a .keras model file")
    size = p.stat().st_size
    if size == 0:
        raise ModelFileError(path, "is empty (0 bytes); expected a .keras zip archive")
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read: {exc.strerror or exc}") from exc

    suffix = p.suffix.lower()
    if suffix == ".keras" and head.startswith(HDF5_SIGNATURE):
        raise ModelFileError(path, "is a legacy HDF5 model named .keras; expected a .keras zip "
                                   "archive; rename it to .h5 (legacy files also need --unsafe)")
    if suffix in H5_SUFFIXES or head.startswith(HDF5_SIGNATURE):
        return _check_h5(path, head, suffix, allow_h5)
    if suffix != ".keras":
        kind = "a zip archive" if zipfile.is_zipfile(p) else _describe_content(head)
        raise ModelFileError(path, f"has the suffix {p.suffix or '(none)'!r}, which Keras "
                                   f"cannot load; expected a .keras file; received {kind}")
    if not zipfile.is_zipfile(p):
        if head.startswith(b"PK"):
            raise ModelFileError(path, f"is a truncated or corrupted zip archive ({size} bytes; "
                                       "its end-of-archive record is missing); expected a "
                                       "complete .keras zip archive")
        raise ModelFileError(path, f"is not a zip archive; expected a .keras zip archive; "
                                   f"received {_describe_content(head)}")
    return _check_keras_zip(path, p)


def _check_h5(path, head, suffix, allow_h5) -> ModelFile:
    if not head.startswith(HDF5_SIGNATURE):
        raise ModelFileError(path, f"is not an HDF5 file; expected a legacy Keras {suffix} "
                                   f"model; received {_describe_content(head)}")
    if not allow_h5:
        raise ModelFileError(
            path, "is a legacy HDF5 model, refused by default because Keras ignores safe "
                  "mode for .h5 files (CVE-2025-9905) and could run code stored in it; "
                  f"expected a .keras file; {UNSAFE_HINT}, or re-save it as .keras")
    return ModelFile(str(path), "h5")


def _check_keras_zip(path, p) -> ModelFile:
    try:
        with zipfile.ZipFile(p) as archive:
            names = archive.namelist()
            if CONFIG_ENTRY not in names:
                raise ModelFileError(path, f"is a zip archive without {CONFIG_ENTRY}, so not a "
                                           f"Keras model file; expected {CONFIG_ENTRY}, "
                                           f"{WEIGHTS_ENTRY}; received {_entries(names)}")
            if WEIGHTS_ENTRY not in names:
                raise ModelFileError(path, f"has no {WEIGHTS_ENTRY} (the weights); expected "
                                           f"{CONFIG_ENTRY}, {WEIGHTS_ENTRY}; received "
                                           f"{_entries(names)}")
            bad = archive.testzip()  # reads every entry, checking its CRC
            if bad is not None:
                raise ModelFileError(path, f"zip entry {bad!r} is corrupted (its CRC check "
                                           "failed); expected an intact .keras archive")
            raw_config = archive.read(CONFIG_ENTRY)
            with archive.open(WEIGHTS_ENTRY) as weights:
                weights_head = weights.read(32)
    except ModelFileError:
        raise
    except Exception as exc:
        # BadZipFile, EOFError, OSError, NotImplementedError (unknown compression) and
        # zlib.error (a plain Exception subclass) all mean the archive is damaged.
        raise ModelFileError(path, f"is a corrupted zip archive ({type(exc).__name__}: "
                                   f"{_one_line(exc)}); expected an intact .keras archive"
                             ) from exc
    if not weights_head.startswith(HDF5_SIGNATURE):
        raise ModelFileError(path, f"its {WEIGHTS_ENTRY} is not an HDF5 file; received "
                                   f"{_describe_content(weights_head)}")
    try:
        config = json.loads(raw_config.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelFileError(path, f"its {CONFIG_ENTRY} is not UTF-8 text (byte "
                                   f"{exc.start}); expected JSON") from exc
    except json.JSONDecodeError as exc:
        raise ModelFileError(path, f"its {CONFIG_ENTRY} is not valid JSON (line {exc.lineno} "
                                   f"column {exc.colno}: {exc.msg})") from exc
    if not (isinstance(config, dict) and "class_name" in config and "config" in config):
        received = (f"keys {sorted(config)[:6]}" if isinstance(config, dict)
                    else type(config).__name__)
        raise ModelFileError(path, f"its {CONFIG_ENTRY} does not describe a model; expected "
                                   f"an object with 'class_name' and 'config'; received "
                                   f"{received}")
    info = ModelFile(str(path), "keras", config)
    _scan_functions(config, None, info)
    return info


def _scan_functions(node, layer_name, info: ModelFile) -> None:
    """Record layers with serialized bytecode and the registered functions layers use.

    A serialized Python lambda is ``{"class_name": "__lambda__", "config": {"code": ...}}``;
    a registered function is ``{"class_name": "function", "config": "package>name"}``.
    """
    if isinstance(node, dict):
        if "inbound_nodes" in node and isinstance(node.get("config"), dict):
            layer_name = node.get("name") or node["config"].get("name") or layer_name
        class_name = node.get("class_name")
        if class_name == "__lambda__" and layer_name not in info.lambda_bytecode:
            info.lambda_bytecode.append(layer_name)
        elif (class_name == "function" and isinstance(node.get("config"), str)
              and ">" in node["config"]):
            info.named_functions.append((layer_name, node["config"]))
        for value in node.values():
            _scan_functions(value, layer_name, info)
    elif isinstance(node, list):
        for value in node:
            _scan_functions(value, layer_name, info)


def _layer_entries(config):
    """(layer name, class name) for every layer entry of a model config, nested included."""
    if isinstance(config, dict):
        if "inbound_nodes" in config and "class_name" in config:
            inner = config.get("config") if isinstance(config.get("config"), dict) else {}
            yield config.get("name") or inner.get("name"), config["class_name"]
        for value in config.values():
            yield from _layer_entries(value)
    elif isinstance(config, list):
        for value in config:
            yield from _layer_entries(value)


def _entries(names) -> str:
    shown = ", ".join(names[:5]) or "no entries"
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _describe_content(head: bytes) -> str:
    """'text starting with "hello"' or 'binary data starting with b"..."'."""
    if head.startswith(HDF5_SIGNATURE):
        return "an HDF5 file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        snippet = " ".join(text.split())[:30]
        return f"a text file starting with {snippet!r}"
    return f"binary data starting with {head[:8]!r}"


def _one_line(exc) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 240 else text[:237] + "..."


def first_paragraph(exc: BaseException, limit: int = 240) -> str:
    """The first paragraph of an exception's message on one line, without a final period
    (Keras appends examples and argument listings after a blank line; TensorFlow adds
    terminal colour codes).

    >>> first_paragraph(ValueError("Bad value.\\n\\nExample:\\n  x = 1"))
    'Bad value'
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    text = " ".join(re.split(r"\n\s*\n", text, maxsplit=1)[0].split()).rstrip(".")
    text = text or "(no message)"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def layer_in_traceback(exc: BaseException) -> str:
    """`` in layer 'name' (Class)`` for the innermost layer whose method the traceback passed
    through (a local ``self``, ``layer`` or ``operation``), else `` in a Class layer`` from
    Keras's "Exception encountered when calling Class.call()" or "Object Class was created by
    passing ...", else ``""``. Keras's traceback filtering drops its own frames: the command
    line turns it off while it runs."""
    try:
        import keras
    except Exception:
        return ""
    chain, seen = [], exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for link in chain:
        frames, tb = [], link.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        for frame in reversed(frames):  # innermost first
            for name in ("self", "layer", "operation"):
                value = frame.f_locals.get(name)
                if isinstance(value, keras.layers.Layer) and not isinstance(value, keras.Model):
                    return f" in layer {value.name!r} ({type(value).__name__})"
    text = " ".join(str(link) for link in chain)
    found = (re.search(r"Exception encountered when calling (\w+)\.call\(\)", text)
             or re.search(r"Object (\w+) was created by passing", text))
    return f" in a {found.group(1)} layer" if found else ""


# --------------------------------------------------------------------------- loading


def load_model(path, *, safe_mode: bool = True, allow_h5: bool | None = None):
    """Check `path` with `check_model_file`, then load it with Keras.

    Args:
        path: a .keras file (or a legacy .h5 file when safe mode is off).
        safe_mode: refuse Python bytecode stored in the file (Lambda layers).
        allow_h5: accept legacy .h5 files; by default only when `safe_mode` is False.

    Returns:
        The loaded `keras.Model`.

    Raises:
        ModelFileError: the file is not a loadable model, or safe mode refuses it; the
            message names the layer and the option (--unsafe, --custom-objects) that helps.
    """
    info = check_model_file(path, allow_h5=(not safe_mode) if allow_h5 is None else allow_h5)
    if safe_mode and info.lambda_bytecode:
        layers = ", ".join(repr(n) for n in info.lambda_bytecode)
        raise ModelFileError(
            path, f"layer {layers} (Lambda) holds Python bytecode, which safe mode refuses to "
                  "load because it could run arbitrary code; expected Lambda layers calling "
                  f"registered functions; {UNSAFE_HINT}")
    import keras
    from . import demo_layers  # noqa: F401  (registers the bundled demo's named function)

    missing = [(layer, fn) for layer, fn in info.named_functions
               if keras.saving.get_registered_object(fn) is None]
    try:
        return keras.saving.load_model(path, safe_mode=safe_mode)
    except Exception as exc:
        raise ModelFileError(path, _explain_load_error(exc, info, missing)) from exc


_LOCATE = re.compile(r"Could not locate (class|function) '([^']+)'")
_DESERIALIZE = re.compile(r"Could not deserialize '([^']+)'")


def _explain_load_error(exc, info: ModelFile, missing) -> str:
    """One line saying why Keras refused the file, from the whole exception chain."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(e) for e in chain)
    if missing:  # more precise than Keras's message: it names the layer
        layer, fn = missing[0]
        return (f"layer {layer!r} calls the function {fn!r}, which is not registered; "
                "expected it to be registered with keras.saving.register_keras_serializable "
                "by a module given with --custom-objects MODULE")
    found = _LOCATE.search(text) or _DESERIALIZE.search(text)
    if found:
        name = found.group(found.lastindex)
        what = found.group(1) if found.lastindex == 2 else "class"
        short = name.rsplit(">", 1)[-1].rsplit(".", 1)[-1]
        layers = info.layers_of_class(short) if info.config else []
        where = (f" (layer{'s' if len(layers) > 1 else ''} "
                 f"{', '.join(repr(n) for n in layers[:3])}{', ...' if len(layers) > 3 else ''})"
                 if layers else "")
        kind = "layer class" if layers else what
        return (f"unknown {kind} {short!r}{where}; expected a Keras {kind} or one registered "
                "by a module given with --custom-objects MODULE")
    if "safe_mode" in text or "arbitrary code" in text:
        return (f"safe mode refused part of this model ({_one_line(chain[-1])[:160]}); "
                f"{UNSAFE_HINT}")
    if isinstance(chain[-1], OSError) or "HDF5" in text or "h5py" in text:
        return (f"its weights could not be read ({type(chain[-1]).__name__}: "
                f"{_one_line(chain[-1])[:160]}); expected an intact {WEIGHTS_ENTRY}")
    root = chain[-1]
    return f"Keras could not load it: {type(root).__name__}: {_one_line(root)[:200]}"


def import_custom_objects(spec: str):
    """Import the module named by `spec` so that its custom layers register themselves.

    Args:
        spec: a dotted module name importable from the current folder (``my_layers`` or
            ``pkg.layers``) or a path to a ``.py`` file.

    Returns:
        The imported module.

    Raises:
        CustomObjectsError: the module was not found or raised while being imported.
    """
    looks_like_path = spec.endswith(".py") or os.sep in spec or "/" in spec
    try:
        if looks_like_path:
            path = pathlib.Path(spec)
            if not path.is_file():
                raise CustomObjectsError(
                    f"--custom-objects {spec}: no such file; expected a .py file or a dotted "
                    "module name")
            name = f"keras_rewrite_custom_objects_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise CustomObjectsError(f"--custom-objects {spec}: cannot be imported as a "
                                         "Python module; expected a .py file")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
            return module
        # Like `python -m`, let modules in the current folder be found (console scripts
        # do not put it on sys.path).
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())
        return importlib.import_module(spec)
    except CustomObjectsError:
        raise
    except ModuleNotFoundError as exc:
        raise CustomObjectsError(f"--custom-objects {spec}: cannot import it ({exc}); expected "
                                 "a module importable from the current folder or a path to a "
                                 ".py file") from exc
    except Exception as exc:
        raise CustomObjectsError(f"--custom-objects {spec}: importing it raised "
                                 f"{type(exc).__name__}: {_one_line(exc)}") from exc


# --------------------------------------------------------------------------- a sample batch


FALLBACK_WORDS = ("the", "cat", "sat", "on", "a", "mat")


def random_batch(model, batch: int = 4, seed: int = 0, unknown_dim: int = 32):
    """A reproducible random batch for `model`: standard normal floats, small integers, and
    for string inputs words from the model's vocabulary.

    Unknown non-batch dimensions become `unknown_dim` (32 survives five 2x poolings).
    A string input feeding a ``StringLookup`` gets one vocabulary word per element; one feeding
    a ``TextVectorization`` gets a few words per element (the vocabulary of the model's lookup
    layers in order, the first to the first string input; fixed English words when the model
    has no vocabulary).
    Returns one array for a single-input model, else the arrays in the model's input
    structure (a list, or a dict for dict inputs).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    vocabularies = iter(_string_vocabularies(model))
    xs = []
    for tensor in model.inputs:
        shape = [batch] + [unknown_dim if d is None else d for d in tensor.shape[1:]]
        dtype = str(tensor.dtype)
        if dtype == "string":
            words, per_element = next(vocabularies, (FALLBACK_WORDS, 1))
            picks = rng.integers(0, len(words), size=shape + [per_element])
            xs.append(np.array([" ".join(words[i] for i in row)
                                for row in picks.reshape(-1, per_element)]).reshape(shape))
        elif "int" in dtype:
            xs.append(rng.integers(0, 2, size=shape).astype(dtype))
        elif dtype == "bool":
            xs.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            xs.append(rng.standard_normal(shape).astype(dtype))
    if len(xs) == 1:
        return xs[0]
    import keras

    # In the model's own input structure (a dict for dict inputs), which Keras expects.
    return keras.tree.pack_sequence_as(model.input, xs)


UNKNOWN_DIMS = (32, 16, 8)


def sample_batch(model, batch: int = 4, seed: int = 0):
    """A random batch `model` accepts and its inference outputs, as (x, outputs).

    Unknown dimensions are tried at 32, then 16 and 8, for models with a length limit (a
    KerasHub GPT-2 with ``max_sequence_length=16`` refuses 32 tokens).

    Raises:
        The error of the first attempt when the model accepts none of them.
    """
    from .verify import predict

    first = None
    for dim in UNKNOWN_DIMS:
        x = random_batch(model, batch=batch, seed=seed, unknown_dim=dim)
        try:
            return x, predict(model, x)
        except Exception as exc:
            first = first or exc
            if all(None not in tuple(t.shape[1:]) for t in model.inputs):
                break  # nothing to shrink
    raise first


def _string_vocabularies(model):
    """(words, words per element) for each lookup layer taking strings, in layer order:
    StringLookup one word per element, TextVectorization three."""
    import keras

    from .verify import walk_layers

    found, inside = [], ""
    for path, layer in walk_layers(model):
        if inside and path.startswith(inside):  # TextVectorization's own StringLookup
            continue
        if isinstance(layer, keras.layers.TextVectorization):
            per_element, inside = 3, path + "/"
        elif isinstance(layer, keras.layers.StringLookup) and not layer.invert:
            per_element = 1
        else:
            continue
        try:
            vocabulary = layer.get_vocabulary()
        except Exception:  # not adapted, or a table that cannot be read: use fixed words
            vocabulary = []
        special = {"", "[UNK]", getattr(layer, "oov_token", None),
                   getattr(layer, "mask_token", None)}
        words = [w.decode() if isinstance(w, bytes) else str(w) for w in vocabulary]
        words = [w for w in words if w not in special][:50]
        found.append((tuple(words) or FALLBACK_WORDS, per_element))
    return found


# --------------------------------------------------------------------------- saving


def check_output_path(path, *, overwrite: bool = False, input_paths=()) -> None:
    """Raise OutputError unless `path` can be written: it ends in .keras, its folder exists
    and is writable, it is not a folder, it is none of `input_paths` (pass none for
    --in-place), and it exists only when `overwrite`."""
    p = pathlib.Path(path)
    folder = p.parent
    if p.suffix != ".keras":
        raise OutputError(path, f"the output must end in .keras (Keras saves only that "
                                f"format); received the suffix {p.suffix or '(none)'!r}")
    if not folder.exists():
        raise OutputError(path, f"the folder {str(folder)!r} does not exist; expected an "
                                "existing folder")
    if not folder.is_dir():
        raise OutputError(path, f"{str(folder)!r} is not a folder; expected an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(path, f"the folder {str(folder)!r} is not writable")
    if p.is_dir():
        raise OutputError(path, "is a folder; expected a file name ending in .keras")
    for given in input_paths:  # even with --force: only --in-place replaces an input
        if os.path.exists(given) and os.path.exists(p) and os.path.samefile(given, p):
            raise OutputError(path, "is the input file; refusing to overwrite the input "
                                    "(pass --in-place to replace it)")
    if not overwrite and os.path.lexists(p):
        raise OutputError(path, "already exists; pass --force to overwrite it")


def save_model(model, path, *, overwrite: bool = False, verify=None) -> None:
    """Write `model` to `path` atomically: a temporary file in the same folder, checked,
    then renamed over `path`.

    Args:
        model: the model to save.
        path: the destination, ending in .keras.
        overwrite: replace an existing file at `path` (its permission bits are kept).
        verify: called with the temporary file's path once it is written; it should reload
            the file and raise `OutputError` if the reloaded model is not the same.

    Raises:
        OutputError: nothing was written (see `check_output_path`), or saving or `verify`
            failed; the temporary file has been removed.
    """
    check_output_path(path, overwrite=overwrite)
    p = pathlib.Path(path)
    try:
        # The ".keras" suffix is required by model.save; the leading dot hides it from `ls`.
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp.keras", dir=p.parent)
    except OSError as exc:
        raise OutputError(path, f"cannot create a file in the folder {str(p.parent)!r}: "
                                f"{exc.strerror or exc}") from exc
    os.close(fd)
    try:
        try:
            model.save(tmp)
        except OSError as exc:
            raise OutputError(path, f"writing failed: {exc.strerror or _one_line(exc)}") from exc
        except Exception as exc:
            raise OutputError(path, f"Keras could not save the model{layer_in_traceback(exc)}: "
                                    f"{type(exc).__name__}: {first_paragraph(exc)}; rerun with "
                                    "--verbose and report it") from exc
        if verify is not None:
            verify(tmp)
        # mkstemp makes the file owner-only; give it the mode a plain save would have, or
        # the mode of the file it replaces.
        mode = (os.stat(p).st_mode & 0o7777) if os.path.exists(p) else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        if not overwrite and os.path.lexists(p):  # appeared while we were saving
            raise OutputError(path, "already exists; pass --force to overwrite it")
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
