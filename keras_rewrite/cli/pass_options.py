"""The pass options of the command line, declared once.

`PASS_OPTIONS` says, for each pass the command line offers a flag for, its flags and how to
read its settings from the parsed arguments. The parser (`add_pass_options`), the pass plan
(`pass_specs_from_args`), ``--passes`` files and ``inspect`` read it; any registered pass also
runs with ``--pass NAME`` (``lint`` names passes that way, from the registry).

Nothing here imports Keras: usage errors answer fast. Building the pass objects
(`build_passes`) imports `keras_rewrite.passes` and checks each setting against the pass's
own signature.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
from typing import Callable

from keras_rewrite.cli.status import UsageError

DEFAULT_REORDER = "bn,act,pool,drop"
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")

PASS_ORDER_HELP = """\
passes run in this order: those of --passes FILE.toml (in the file's order), then each --pass,
then --l2 /
--l2-layer, --spatial-dropout, --reorder, --fold-batchnorm, --strip-inference. Without any pass
option the output is an exact copy.
"""


# --------------------------------------------------------------------------- argument values


def coefficient(text: str) -> float:
    """An L2 coefficient from the command line: a finite number >= 0.

    >>> coefficient("1e-4")
    0.0001
    >>> coefficient("-1")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a finite number >= 0 such as 1e-4; received '-1'
    """
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a finite number >= 0 such as 1e-4; received {text!r}")
    return value


def layer_coefficient(text: str) -> tuple[str, float]:
    """A ``--l2-layer`` value ``GLOB=COEF`` as (glob, coefficient).

    >>> layer_coefficient("conv2d*=1e-5")
    ('conv2d*', 1e-05)
    """
    pattern, sep, number = text.rpartition("=")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"expected GLOB=COEF such as 'conv2d*=1e-5'; received {text!r} (no '=')")
    if not pattern:
        raise argparse.ArgumentTypeError(
            f"expected GLOB=COEF such as 'conv2d*=1e-5'; received {text!r} (empty layer "
            "name or pattern before '=')")
    try:
        return pattern, coefficient(number)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected GLOB=COEF with COEF a finite number >= 0, such as 'conv2d*=1e-5'; "
            f"received {text!r}") from None


def reorder_order(text: str) -> tuple[str, ...]:
    """A ``--reorder`` ORDER such as ``bn,act,pool,drop`` as a tuple of keys.

    Which keys exist is checked by `ReorderBlocks` itself; here only the shape of the value,
    and the common slip of ``--reorder model.keras`` (argparse takes the file as ORDER).
    """
    if text.lower().endswith(MODEL_SUFFIXES) or os.path.sep in text:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated keys such as {DEFAULT_REORDER!r}; received {text!r}, "
            f"which looks like a model file: write --reorder={DEFAULT_REORDER} or put "
            "--reorder after the input files")
    keys = tuple(k.strip() for k in text.split(","))
    if not all(keys):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated keys such as {DEFAULT_REORDER!r}; received {text!r} "
            "(an empty key)")
    return keys


# --------------------------------------------------------------------------- the declarations


@dataclasses.dataclass(frozen=True)
class PassOption:
    """How the command line offers one pass.

    Attributes:
        name: the pass's short name (`keras_rewrite.passes.SHORT_NAMES`).
        add: adds its options to an argparse group.
        settings: the pass's settings from parsed arguments, or None when not asked for.
        origin: how error messages name the options.
        settings_from_file: converts a ``--passes`` table's values (e.g. an order string).
    """

    name: str
    add: Callable
    settings: Callable
    origin: str
    settings_from_file: Callable = dict


def _add_l2(group):
    group.add_argument("--l2", type=coefficient, metavar="COEF",
                       help="add L2(COEF) weight decay to every weight kernel (e.g. 1e-4); "
                            "--l2 0 with --l2-layer: only the layers named there")
    group.add_argument("--l2-layer", type=layer_coefficient, action="append", default=[],
                       metavar="GLOB=COEF",
                       help="coefficient for the layers whose name matches GLOB (fnmatch, "
                            "e.g. 'conv2d*=1e-5'; 0 leaves them alone); repeatable; implies "
                            "the l2 pass, with --l2 (default 1e-4) for the other layers. A "
                            "pattern matching no layer is an error")


def _l2_settings(args):
    if args.l2 is None and not args.l2_layer:
        return None
    settings = {} if args.l2 is None else {"factor": args.l2}
    if args.l2_layer:
        per_layer = {}
        for pattern, value in args.l2_layer:
            if pattern in per_layer and per_layer[pattern] != value:
                raise UsageError(f"argument --l2-layer: {pattern!r} is given twice with "
                                 f"different coefficients ({per_layer[pattern]} and "
                                 f"{value}); expected each pattern once")
            per_layer[pattern] = value
        settings["per_layer"] = per_layer
    return settings


def _add_flag(flag, help_text):
    def add(group):
        group.add_argument(flag, action="store_true", help=help_text)
    return add


def _add_spatial_dropout(group):
    group.add_argument("--spatial-dropout", action="store_true",
                       help="replace Dropout on feature maps with SpatialDropout1D/2D/3D")


def _add_reorder(group):
    group.add_argument("--reorder", nargs="?", const=reorder_order(DEFAULT_REORDER),
                       type=reorder_order, metavar="ORDER",
                       help="reorder the layers after each conv/dense layer into ORDER "
                            f"(default {DEFAULT_REORDER}); keys: bn, act, pool, drop")


def _reorder_from_file(settings):
    if isinstance(settings.get("order"), str):
        try:
            settings["order"] = reorder_order(settings["order"])
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"order: {exc}") from None
    return settings


PASS_OPTIONS = (
    PassOption("l2", _add_l2, _l2_settings, "--l2/--l2-layer"),
    PassOption("spatial_dropout", _add_spatial_dropout,
               lambda args: {} if args.spatial_dropout else None, "--spatial-dropout"),
    PassOption("reorder", _add_reorder,
               lambda args: None if args.reorder is None else {"order": args.reorder},
               "--reorder", _reorder_from_file),
    PassOption("fold_batchnorm", _add_flag("--fold-batchnorm", "fold each BatchNormalization "
                                           "into the conv/dense layer before it (for export)"),
               lambda args: {} if args.fold_batchnorm else None, "--fold-batchnorm"),
    PassOption("strip_inference", _add_flag("--strip-inference", "remove the layers that act "
                                            "only while training (Dropout, noise, ...)"),
               lambda args: {} if args.strip_inference else None, "--strip-inference"),
)
BY_NAME = {option.name: option for option in PASS_OPTIONS}
# The seed questions' passes: what demo runs, and inspect's default.
ALL_PASSES = ("l2", "spatial_dropout", "reorder")


def pass_with_settings(text: str) -> tuple[str, dict]:
    """A ``--pass`` value ``NAME[:OPTION=VALUE,...]`` as (name, settings); values are Python
    literals (``1e-4``, ``True``, ``'x'``, ``None,None,3`` a tuple), JSON arrays and objects
    (``[null,null,3]``), or else plain text (``order=bn,act,pool,drop``).

    >>> pass_with_settings("l2:factor=1e-4,include_biases=True")
    ('l2', {'factor': 0.0001, 'include_biases': True})
    >>> pass_with_settings("reorder:order=bn,act,pool,drop")
    ('reorder', {'order': 'bn,act,pool,drop'})
    >>> pass_with_settings("set_input_shape:shape=None,None,3")
    ('set_input_shape', {'shape': (None, None, 3)})
    >>> pass_with_settings("set_input_shape:shape=[null,null,3]")
    ('set_input_shape', {'shape': [None, None, 3]})
    """
    import ast
    import json
    import re

    name, _, rest = text.partition(":")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(
            f"expected NAME[:OPTION=VALUE,...] such as 'l2:factor=1e-4'; received {text!r}")
    settings = {}
    for item in re.split(r",(?=\s*[A-Za-z_]\w*\s*=)", rest) if rest else []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise argparse.ArgumentTypeError(
                f"expected OPTION=VALUE after '{name}:'; received {item!r} in {text!r}")
        value = value.strip()
        try:
            settings[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[key.strip()] = value
            if value.startswith(("[", "{")):  # JSON: null, true, false
                try:
                    settings[key.strip()] = json.loads(value)
                except ValueError:
                    pass
    return name, settings


def add_pass_options(parser) -> None:
    """``--pass`` (any registered pass, with its options), the flags of `PASS_OPTIONS`, then
    ``--passes``."""
    group = parser.add_argument_group("passes", PASS_ORDER_HELP.rstrip())
    group.add_argument("--pass", dest="pass_", type=pass_with_settings, action="append",
                       default=[], metavar="NAME[:OPTION=VALUE,...]",
                       help="run the registered pass NAME with these options (repeatable; "
                            "`keras-rewrite passes` lists them), e.g. --pass l2:factor=1e-4")
    for option in PASS_OPTIONS:
        option.add(group)
    names = " | ".join(f'"{o.name}"' for o in PASS_OPTIONS)
    group.add_argument("--passes", metavar="FILE.toml",
                       help=f"passes and their settings from a TOML file of [[pass]] tables "
                            f"(name = {names}, then the pass's arguments)")


# --------------------------------------------------------------------------- the pass plan


@dataclasses.dataclass
class PassSpec:
    """A pass to build: its short name, its settings, and where it was asked for."""

    name: str
    settings: dict
    origin: str  # "--l2", "passes.toml: pass 2" ... for error messages


def load_pass_file(path) -> list[PassSpec]:
    """The passes of a TOML file, in order. Each ``[[pass]]`` table has a ``name`` (a short
    pass name) and that pass's settings::

        [[pass]]
        name = "l2"
        factor = 1e-4
        [pass.per_layer]
        "conv2d*" = 1e-5

        [[pass]]
        name = "reorder"
        order = "bn,act,pool,drop"    # or ["bn", "act", "pool", "drop"]

    Raises:
        UsageError: the file is missing, not TOML, absurdly nested, or a table is malformed.
    """
    import tomllib

    where = f"--passes {path}"
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"{where}: no such file; expected a TOML file of [[pass]] "
                         "tables") from None
    except IsADirectoryError:
        raise UsageError(f"{where}: is a folder; expected a TOML file") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"{where}: nested too deeply to read; expected [[pass]] tables a "
                         "few levels deep") from None
    tables = data.get("pass")
    extra = sorted(set(data) - {"pass"})
    if extra:
        raise UsageError(f"{where}: unknown top-level key(s) {extra}; expected only "
                         "[[pass]] tables")
    if not isinstance(tables, list) or not tables:
        raise UsageError(f"{where}: expected at least one [[pass]] table with a name; "
                         f"received {'no [[pass]] table' if tables is None else repr(tables)}")
    specs = []
    for i, table in enumerate(tables, 1):
        origin = f"{where}: pass {i}"
        if not isinstance(table, dict):
            raise UsageError(f"{origin}: expected a [[pass]] table; received {table!r}")
        settings = dict(table)
        name = settings.pop("name", None)
        if not isinstance(name, str):
            raise UsageError(f"{origin}: expected name = a pass short name (keras-rewrite "
                             "passes lists them); received "
                             f"{'no name' if name is None else repr(name)}")
        option = BY_NAME.get(name)
        if option is not None:
            try:
                settings = option.settings_from_file(settings)
            except UsageError as exc:
                raise UsageError(f"{origin} ({name}): {exc}") from None
        specs.append(PassSpec(name, settings, f"{origin} ({name})"))
    return specs


def pass_specs_from_args(args) -> list[PassSpec]:
    """The pass plan the command-line options ask for, in the documented order."""
    specs = load_pass_file(args.passes) if getattr(args, "passes", None) else []
    for name, settings in getattr(args, "pass_", []):
        option = BY_NAME.get(name)
        if option is not None:
            settings = option.settings_from_file(dict(settings))
        specs.append(PassSpec(name, settings, f"--pass {name}"))
    for option in PASS_OPTIONS:
        settings = option.settings(args)
        if settings is not None:
            specs.append(PassSpec(option.name, settings, option.origin))
    return specs


def build_passes(specs: list[PassSpec]) -> list:
    """Fresh pass objects for `specs`; a misconfiguration is a UsageError naming its origin.
    (Imports keras_rewrite, hence TensorFlow.)"""
    import inspect

    from keras_rewrite import passes as passes_module
    from keras_rewrite.errors import PassError

    built = []
    for spec in specs:
        class_name = passes_module.SHORT_NAMES.get(spec.name)
        if class_name is None:
            raise UsageError(f"{spec.origin}: unknown pass {spec.name!r}; expected one of "
                             f"{sorted(passes_module.SHORT_NAMES)}")
        cls = getattr(passes_module, class_name)
        accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(spec.settings) - set(accepted))
        if unknown:
            raise UsageError(f"{spec.origin}: unknown setting(s) {unknown}; expected some of "
                             f"{accepted}")
        try:
            built.append(cls(**spec.settings))
        except (PassError, TypeError, ValueError) as exc:
            raise UsageError(f"{spec.origin}: {exc}") from None
    return built
