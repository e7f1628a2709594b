"""Model files: check one without running any of it, then load it safely.

Keras's own load errors mislead (see ../shared/KERAS_FACTS.md, "Saving and loading"): a
missing path, an empty file, a text file named ``.keras`` and a truncated archive all say
``File not found``; a zip without ``config.json`` raises KeyError; an unknown layer class
surfaces as "could not be deserialized properly" three exceptions deep. So `check_model_file`
looks at the file first (exists, is a regular file, not empty, a zip, entries intact,
``config.json`` parses and is not absurdly nested, ``model.weights.h5`` present) and
`load_model` then translates what Keras still raises into one `ModelFileError` line naming the
file, what was expected and what was received.

Bounded: what is read before Keras sees the file is limited (`FileLimits`: the size of
``config.json``, its nesting depth, its number of layers); a file past a limit is refused with
the limit's name and how to raise it, and never reaches Keras. Within the limits the checks
hold at most one parsed copy of the config at a time and none while Keras loads.

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
import zipfile

from keras_rewrite.errors import one_line, show_path
from keras_rewrite.errors import RewriteError

__all__ = ["ModelFileError", "CustomObjectsError", "ModelFile", "FileLimits", "check_model_file",
           "load_model", "import_custom_objects", "UNSAFE_HINT", "CUSTOM_OBJECTS_HINT"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
H5_SUFFIXES = (".h5", ".hdf5")
CONFIG_ENTRY = "config.json"
WEIGHTS_ENTRY = "model.weights.h5"
# Library messages say what to do in library terms; the command line swaps in its flags
# (keras_rewrite.cli.terminal.CLI_WORDS).
UNSAFE_HINT = "load it with safe_mode=False if you trust this file"
CUSTOM_OBJECTS_HINT = "a module imported before loading (custom objects)"
MAX_CONFIG_DEPTH = 100  # nesting of config.json; real models stay far below (ResNet50: 9)
MAX_CONFIG_MB = 64  # size of config.json: about 1 KB per layer (ResNet50: 172 KiB, 177 layers)
MAX_LAYERS = 50_000  # layer entries in config.json, nested models included
# How to raise each limit, in library terms; the command line swaps in its flags
# (keras_rewrite.cli.terminal.CLI_WORDS).
LIMIT_HINTS = {name: f"raise it with limits=FileLimits({name}=N) if you trust this file"
               for name in ("max_config_mb", "max_config_depth", "max_layers")}


@dataclasses.dataclass(frozen=True)
class FileLimits:
    """Limits on what `check_model_file` reads of a ``.keras`` file before Keras does.

    A file past one is refused (`ModelFileError` naming the limit and how to raise it), so
    a hostile file (a config of hundreds of MB, nested thousands of levels, a million
    layers) costs neither memory nor time in Keras. The defaults are far above real models.

    Attributes:
        max_config_mb: size of ``config.json`` in MiB (1 MiB = 1,048,576 bytes), as stored
            uncompressed; Keras's own load costs about 3x this in memory.
        max_config_depth: nesting of objects and arrays in ``config.json``.
        max_layers: layer entries in ``config.json`` (nested models' layers included).
    """

    max_config_mb: float = MAX_CONFIG_MB
    max_config_depth: int = MAX_CONFIG_DEPTH
    max_layers: int = MAX_LAYERS

    @property
    def max_config_bytes(self) -> int:
        return int(self.max_config_mb * 1024 * 1024)


class ModelFileError(RewriteError, ValueError):
    """A model file is missing, unreadable, not a Keras model, or refused by safe mode.

    Attributes:
        path: the file as the user named it.
        reason: what is wrong, what was expected and what was received (one line).
    """

    def __init__(self, path, reason):
        super().__init__(f"{show_path(path)}: {reason}")
        self.path = str(path)
        self.reason = reason


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
        layers: (layer name, class name) of every layer entry, nested models included;
            kept when `config` is dropped (`load_model` does, before Keras parses its own).
    """

    path: str
    format: str
    config: dict | None = None
    lambda_bytecode: list = dataclasses.field(default_factory=list)
    named_functions: list = dataclasses.field(default_factory=list)
    layers: list = dataclasses.field(default_factory=list)

    def layers_of_class(self, class_name: str) -> list[str]:
        """Names of the layers of `class_name` in the config (nested models included)."""
        return [name for name, cls in self.layers if cls == class_name]


# --------------------------------------------------------------------------- checking a file


def check_model_file(path, *, allow_h5: bool = False,
                     limits: FileLimits | None = None) -> ModelFile:
    """Check that `path` is a readable Keras model file, without running any of its content.

    Args:
        path: a ``.keras`` file (or a legacy ``.h5`` file when `allow_h5`).
        allow_h5: accept legacy HDF5 files. They are refused by default because Keras
            ignores ``safe_mode`` when loading them.
        limits: what may be read before Keras does (default `FileLimits()`).

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
                                   "archive; rename it to .h5 (legacy files also need safe_mode=False)")
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
    return _check_keras_zip(path, p, limits or FileLimits())


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


def _check_keras_zip(path, p, limits: FileLimits) -> ModelFile:
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
            # Before reading anything: the size the archive declares (zipfile reads no more
            # than it, and a CRC check fails if the data holds more).
            _check_config_size(path, archive.getinfo(CONFIG_ENTRY).file_size, limits)
            bad = archive.testzip()  # reads every entry in 1 MiB chunks, checking its CRC
            if bad is not None:
                raise ModelFileError(path, f"zip entry {bad!r} is corrupted (its CRC check "
                                           "failed); expected an intact .keras archive")
            with archive.open(CONFIG_ENTRY) as entry:
                raw_config = entry.read(limits.max_config_bytes + 1)
            _check_config_size(path, len(raw_config), limits)
            with archive.open(WEIGHTS_ENTRY) as weights:
                weights_head = weights.read(32)
    except ModelFileError:
        raise
    except Exception as exc:
        # BadZipFile, EOFError, OSError, NotImplementedError (unknown compression) and
        # zlib.error (a plain Exception subclass) all mean the archive is damaged.
        raise ModelFileError(path, f"is a corrupted zip archive ({type(exc).__name__}: "
                                   f"{one_line(exc)}); expected an intact .keras archive"
                             ) from exc
    if not weights_head.startswith(HDF5_SIGNATURE):
        raise ModelFileError(path, f"its {WEIGHTS_ENTRY} is not an HDF5 file; received "
                                   f"{_describe_content(weights_head)}")
    # The bytes, then the text, then the parsed config, each dropped once the next exists.
    depth = json_depth(raw_config)
    if depth > limits.max_config_depth:
        raise ModelFileError(path, f"its {CONFIG_ENTRY} is nested {depth} levels deep; "
                                   f"expected at most {limits.max_config_depth} (a model "
                                   "config is a few levels deep; the limit on nesting "
                                   "read before Keras loads a file); "
                                   f"{LIMIT_HINTS['max_config_depth']}")
    try:
        text = raw_config.decode("utf-8")
        del raw_config
        config = json.loads(text)
    except UnicodeDecodeError as exc:
        raise ModelFileError(path, f"its {CONFIG_ENTRY} is not UTF-8 text (byte "
                                   f"{exc.start}); expected JSON") from exc
    except json.JSONDecodeError as exc:
        raise ModelFileError(path, f"its {CONFIG_ENTRY} is not valid JSON (line {exc.lineno} "
                                   f"column {exc.colno}: {exc.msg})") from exc
    except RecursionError:  # a depth limit raised past what Python's parser can read
        raise ModelFileError(path, f"its {CONFIG_ENTRY} is nested {depth} levels deep, more "
                                   "than Python's JSON parser (which Keras uses too) reads "
                                   f"at the recursion limit {sys.getrecursionlimit()}"
                             ) from None
    finally:
        text = None
    if not (isinstance(config, dict) and "class_name" in config and "config" in config):
        received = (f"keys {sorted(config)[:6]}" if isinstance(config, dict)
                    else type(config).__name__)
        raise ModelFileError(path, f"its {CONFIG_ENTRY} does not describe a model; expected "
                                   f"an object with 'class_name' and 'config'; received "
                                   f"{received}")
    count = count_layers(config)
    if count > limits.max_layers:
        raise ModelFileError(path, f"its {CONFIG_ENTRY} holds {count:,} layers; expected at "
                                   f"most {limits.max_layers:,} (the limit on layers read "
                                   "before Keras loads a file); "
                                   f"{LIMIT_HINTS['max_layers']}")
    info = ModelFile(str(path), "keras", config, layers=list(_layer_entries(config)))
    _scan_functions(config, None, info)
    return info


def _check_config_size(path, size: int, limits: FileLimits) -> None:
    if size > limits.max_config_bytes:
        raise ModelFileError(path, f"its {CONFIG_ENTRY} is {_mib(size)} ({size:,} bytes); "
                                   f"expected at most {limits.max_config_mb:g} MiB (the limit "
                                   "on the config read before Keras loads a file); "
                                   f"{LIMIT_HINTS['max_config_mb']}")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


_BRACKETS = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_QUOTE = ord('"')
_CHUNK = 1 << 18  # bytes per step: a few MiB of temporary arrays


def json_depth(data) -> int:
    """How deeply JSON `data` (str or UTF-8 bytes) nests objects and arrays, found without
    parsing it (Python's parser raises RecursionError on deep nesting).

    Linear in time; in memory a fixed few MiB, plus, only when `data` holds backslashes, two
    copies of it briefly (`bytes.replace`; a regex would hold a backtracking entry or a
    piece per match): it is run on configs of hundreds of MB.

    >>> json_depth(r'{"a": [1, {"b": "[[[\\\"{"}]}')
    3
    """
    import numpy as np

    if isinstance(data, str):
        data = data.encode("utf-8")
    if b"\\" in data:  # escapes only occur inside strings; pairs read from the left, so
        # dropping "\\\\" then '\\"' leaves every string delimited by its own quotes
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    step = np.zeros(256, np.int8)
    for byte, change in _BRACKETS.items():
        step[byte] = change
    depth = deepest = 0
    in_string = 0
    for start in range(0, len(data), _CHUNK):
        chunk = np.frombuffer(data, np.uint8, count=min(_CHUNK, len(data) - start),
                              offset=start)
        # parity of the quotes seen so far: 1 inside a string (a bracket is no quote, so
        # the count up to and including it is the count before it)
        inside = np.cumsum(chunk == _QUOTE, dtype=np.int64)
        inside += in_string
        inside &= 1
        levels = step[chunk]
        levels[inside == 1] = 0
        levels = np.cumsum(levels, dtype=np.int64)
        levels += depth
        deepest = max(deepest, int(levels.max()))
        depth, in_string = int(levels[-1]), int(inside[-1])
    return deepest


def count_layers(config) -> int:
    """Layer entries in a model config: objects with a ``class_name`` in a ``layers`` list,
    at any depth (nested models, and wrappers holding models). Iterative: no recursion.

    >>> count_layers({"config": {"layers": [{"class_name": "Dense"},
    ...     {"class_name": "Sequential", "config": {"layers": [{"class_name": "ReLU"}]}}]}})
    3
    """
    count, stack = 0, [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            layers = node.get("layers")
            if isinstance(layers, list):
                count += sum(1 for entry in layers
                             if isinstance(entry, dict) and "class_name" in entry)
            stack.extend(value for value in node.values() if isinstance(value, (dict, list)))
        elif isinstance(node, list):
            stack.extend(value for value in node if isinstance(value, (dict, list)))
    return count


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


# --------------------------------------------------------------------------- loading


def load_model(path, *, safe_mode: bool = True, allow_h5: bool | None = None,
               custom_objects=None, limits: FileLimits | None = None):
    """Check `path` with `check_model_file`, then load it with Keras.

    Args:
        path: a .keras file (or a legacy .h5 file when safe mode is off).
        safe_mode: refuse Python bytecode stored in the file (Lambda layers).
        allow_h5: accept legacy .h5 files; by default only when `safe_mode` is False.
        custom_objects: a dict of names to classes or functions, as for Keras's
            ``load_model`` (or register them with ``keras.saving.register_keras_serializable``).
        limits: what may be read before Keras does (`FileLimits`; default `FileLimits()`).

    Returns:
        The loaded `keras.Model`.

    Raises:
        ModelFileError: the file is not a loadable model, or safe mode refuses it; the
            message names the layer and what helps (safe_mode=False, custom objects).
    """
    info = check_model_file(path, allow_h5=(not safe_mode) if allow_h5 is None else allow_h5,
                            limits=limits)
    info.config = None  # Keras parses its own copy: ours is not held meanwhile
    if safe_mode and info.lambda_bytecode:
        layers = ", ".join(repr(n) for n in info.lambda_bytecode)
        raise ModelFileError(
            path, f"layer {layers} (Lambda) holds Python bytecode, which safe mode refuses to "
                  "load because it could run arbitrary code; expected Lambda layers calling "
                  f"registered functions; {UNSAFE_HINT}")
    import keras
    from keras_rewrite.files import demo_layers  # noqa: F401  (registers the bundled demo's named function)

    missing = [(layer, fn) for layer, fn in info.named_functions
               if keras.saving.get_registered_object(fn, custom_objects) is None]
    try:
        return keras.saving.load_model(path, safe_mode=safe_mode,
                                       custom_objects=custom_objects)
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
                f"by {CUSTOM_OBJECTS_HINT}")
    found = _LOCATE.search(text) or _DESERIALIZE.search(text)
    if found:
        name = found.group(found.lastindex)
        what = found.group(1) if found.lastindex == 2 else "class"
        short = name.rsplit(">", 1)[-1].rsplit(".", 1)[-1]
        layers = info.layers_of_class(short)
        where = (f" (layer{'s' if len(layers) > 1 else ''} "
                 f"{', '.join(repr(n) for n in layers[:3])}{', ...' if len(layers) > 3 else ''})"
                 if layers else "")
        kind = "layer class" if layers else what
        return (f"unknown {kind} {short!r}{where}; expected a Keras {kind} or one registered "
                f"by {CUSTOM_OBJECTS_HINT}")
    if "safe_mode" in text or "arbitrary code" in text:
        return (f"safe mode refused part of this model ({one_line(chain[-1])[:160]}); "
                f"{UNSAFE_HINT}")
    if isinstance(chain[-1], OSError) or "HDF5" in text or "h5py" in text:
        return (f"its weights could not be read ({type(chain[-1]).__name__}: "
                f"{one_line(chain[-1])[:160]}); expected an intact {WEIGHTS_ENTRY}")
    root = chain[-1]
    return f"Keras could not load it: {type(root).__name__}: {one_line(root)[:200]}"


def import_custom_objects(spec: str, *, search_folder=None):
    """Import the module named by `spec` so that its custom layers register themselves.

    Args:
        spec: a dotted module name (``my_layers`` or ``pkg.layers``) or a path to a ``.py``
            file.
        search_folder: a folder where a dotted name may also be found (the command line
            gives the current folder). It is on ``sys.path`` only while this module is
            imported, and after every installed package, so a folder holding a package
            named like an installed one (``keras_hub/``) cannot replace it.

    Returns:
        The imported module.

    Raises:
        CustomObjectsError: the module was not found, raised while being imported, or tried
            to end the process (``sys.exit``); the message starts with `spec`.
    """
    looks_like_path = spec.endswith(".py") or os.sep in spec or "/" in spec
    added = False
    try:
        if looks_like_path:
            path = pathlib.Path(spec)
            if not path.is_file():
                raise CustomObjectsError(
                    f"{show_path(spec)}: no such file; expected a .py file or a dotted module "
                    "name")
            name = f"keras_rewrite_custom_objects_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise CustomObjectsError(f"{show_path(spec)}: cannot be imported as a Python "
                                         "module; expected a .py file")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return module
        if search_folder is not None and str(search_folder) not in sys.path:
            sys.path.append(str(search_folder))
            added = True
        return importlib.import_module(spec)
    except CustomObjectsError:
        raise
    except ModuleNotFoundError as exc:
        raise CustomObjectsError(f"{show_path(spec)}: cannot import it ({exc}); expected an "
                                 "importable module or a path to a .py file") from exc
    except SystemExit as exc:  # a module must not end the process that imports it
        raise CustomObjectsError(f"{show_path(spec)}: importing it called sys.exit("
                                 f"{exc.code!r}); expected a module that only registers "
                                 "custom objects") from None
    except Exception as exc:
        raise CustomObjectsError(f"{show_path(spec)}: importing it raised "
                                 f"{type(exc).__name__}: {one_line(exc)}") from exc
    finally:
        if added:
            sys.path.remove(str(search_folder))
