"""The pass registry: every pass declares itself once, on its class, and is found from there.

A pass class in a module of this package (or a third-party one registered under the entry-point
group ``keras_rewrite.passes``) declares:

    short_name      the name `rewrite(model, ["name"])`, `--passes` files and the README know it by
    summary         one line: what it does
    structural      False when it can act on a live model too (`apply_in_place`, RewriteCallback)
    outputs_unchanged
                    True: inference outputs stay bit-identical; None: equal up to rounding or
                    it depends (the report says per match); False: they change

and its options are its ``__init__`` arguments with their defaults. `passes()` imports the
pass modules and collects the classes (what `rewrite` uses); `declarations()` gives the same
declarations without importing anything heavy: it reads this package's pass modules with
`ast` (the class attributes above, written as literals or module-level constants, and the
``__init__`` signature, following base classes into the modules they are imported from), so
``keras-rewrite passes`` lists them without loading Keras or TensorFlow. A module it cannot read
that way is imported instead. Third-party passes are imported to be listed (their source may
be anywhere), so with one installed, listing loads Keras. `tests/test_registry.py` checks that
both ways give the same declarations for every built-in pass, so they cannot drift apart.
`option_table()` prints the README's table of passes (a test checks the README holds it).

This module imports only the standard library at import time (the command line loads it by
its file, without the package, whose ``__init__`` imports Keras).

Adding a built-in pass is one file in this package (a `Pass` subclass with a `short_name`) plus
its test. A third-party package adds, in its pyproject.toml:

    [project.entry-points."keras_rewrite.passes"]
    my_pass = "my_package.my_module:MyPass"
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
from pathlib import Path

__all__ = ["passes", "options", "option_table", "declarations", "Declaration", "REQUIRED"]

PACKAGE = "keras_rewrite.passes"  # absolute: this module may be loaded without its package
SURGERY_PACKAGE = "keras_rewrite.surgery"
ENTRY_POINT_GROUP = "keras_rewrite.passes"
REQUIRED = inspect.Parameter.empty  # the "default" of an option that has none
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent.parent  # the folder holding the keras_rewrite package
_NOT_PASSES = {"base", "registry", "rules"}
_BASE_PASS = ("keras_rewrite.passes.base", "Pass")


@dataclasses.dataclass(frozen=True)
class Declaration:
    """What a pass class declares about itself (see the module docstring)."""

    short_name: str
    class_name: str
    module: str
    summary: str
    structural: bool
    outputs_unchanged: bool | None
    options: tuple  # ((name, default or REQUIRED), ...): the __init__ arguments

    @classmethod
    def of(cls, pass_class: type) -> "Declaration":
        """The declaration of an imported pass class."""
        return cls(pass_class.short_name, pass_class.__name__, pass_class.__module__,
                   getattr(pass_class, "summary", ""), getattr(pass_class, "structural", True),
                   getattr(pass_class, "outputs_unchanged", None), tuple(options(pass_class)))


# ----------------------------------------------------------------------- imported passes


@functools.lru_cache(maxsize=None)
def passes() -> dict[str, type]:
    """{short name: pass class}: this package's passes, then entry-point passes (imports
    every pass module, hence Keras)."""
    from keras_rewrite.passes.base import Pass

    found: dict[str, type] = {}
    for name in _pass_module_names():
        module = importlib.import_module(name)
        for cls in _pass_classes(module, Pass):
            _add(found, cls, f"module {module.__name__}")
    for cls, where in _entry_point_classes():
        _add(found, cls, where)
    return found


def _pass_module_names() -> list[str]:
    """The modules that may hold built-in passes: this package's, in name order, then the
    surgery package's that declare a ``short_name`` (model edits, a layer above; named here,
    not imported, so that `keras_rewrite.rewrite(model, ["freeze"])` and the command line find
    them like any other pass)."""
    own = sorted(f"{PACKAGE}.{p.stem}" for p in _HERE.glob("*.py")
                 if p.stem not in _NOT_PASSES and not p.stem.startswith("_"))
    surgery = sorted(f"{SURGERY_PACKAGE}.{p.stem}" for p in (_ROOT / "keras_rewrite" /
                                                            "surgery").glob("*.py")
                     if not p.stem.startswith("_")
                     and "short_name = " in p.read_text(encoding="utf-8"))
    return own + surgery


def _pass_classes(module, base: type) -> list[type]:
    return [cls for cls in vars(module).values()
            if isinstance(cls, type) and issubclass(cls, base)
            and cls.__module__ == module.__name__ and getattr(cls, "short_name", None)]


def _entry_point_classes() -> list[tuple[type, str]]:
    """(class, where) of each installed entry-point pass; imports each one."""
    from importlib import metadata

    found = []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
        except Exception as exc:
            raise _pass_error(f"entry point {entry.name!r} of group {ENTRY_POINT_GROUP!r} "
                              f"({entry.value}) failed to load: {type(exc).__name__}: "
                              f"{exc}") from exc
        if not (isinstance(cls, type) and getattr(cls, "short_name", None)):
            raise _pass_error(f"entry point {entry.name!r} ({entry.value}): expected a pass "
                              f"class with a short_name; received {cls!r}")
        found.append((cls, f"entry point {entry.value}"))
    return found


def _add(found, cls, where):
    other = found.get(cls.short_name)
    if other is not None and other is not cls:
        raise _pass_error(f"two passes are named {cls.short_name!r}: {other.__module__}."
                          f"{other.__name__} and {cls.__name__} ({where}); expected one")
    found[cls.short_name] = cls


def _pass_error(message: str) -> Exception:
    from keras_rewrite.errors import PassError  # on the error path only (imports the package)

    return PassError(message)


def options(cls) -> list[tuple[str, object]]:
    """(name, default) of each option of a pass: its ``__init__`` arguments (`REQUIRED` as
    the default of one without)."""
    signature = inspect.signature(cls.__init__)
    return [(p.name, p.default) for p in list(signature.parameters.values())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


# ------------------------------------------------------------------- declarations, read


def declarations() -> dict[str, Declaration]:
    """{short name: Declaration} of every registered pass, as `passes()` finds them, without
    importing the built-in ones (read from their source; a module the reader cannot follow
    is imported). Entry-point passes are imported: with none installed, nothing is."""
    found = dict(_declarations_from_source())
    from importlib import metadata

    if metadata.entry_points(group=ENTRY_POINT_GROUP):
        for cls, where in _entry_point_classes():
            other = found.get(cls.short_name)
            if other is not None and (other.module, other.class_name) != (cls.__module__,
                                                                          cls.__name__):
                raise _pass_error(f"two passes are named {cls.short_name!r}: {other.module}."
                                  f"{other.class_name} and {cls.__name__} ({where}); expected "
                                  "one")
            found[cls.short_name] = Declaration.of(cls)
    return found


@functools.lru_cache(maxsize=None)
def _declarations_from_source(strict: bool = False) -> dict[str, Declaration]:
    """The built-in passes' declarations, read from their modules' source.

    With `strict`, a declaration the reader cannot follow raises `Unreadable` (the test that
    every built-in pass is read without importing); otherwise that module is imported.
    """
    found: dict[str, Declaration] = {}
    for module in _pass_module_names():
        try:
            read = _read_module(module)
        except Unreadable:
            if strict:
                raise
            from keras_rewrite.passes.base import Pass

            read = [Declaration.of(c) for c in _pass_classes(importlib.import_module(module),
                                                             Pass)]
        for declaration in read:
            other = found.get(declaration.short_name)
            if other is not None:
                raise _pass_error(f"two passes are named {declaration.short_name!r}: "
                                  f"{other.module}.{other.class_name} and "
                                  f"{declaration.class_name} (module {module}); expected one")
            found[declaration.short_name] = declaration
    return found


class Unreadable(Exception):
    """A declaration the source reader cannot follow (not a literal, a base class outside
    keras_rewrite, a decorated ``__init__``...); the module is imported instead."""


_MISSING = object()


class _Source:
    """One module's top level, parsed: its classes, literal constants and imported names."""

    def __init__(self, module: str):
        path = _ROOT.joinpath(*module.split(".")).with_suffix(".py")
        if not path.is_file():
            path = path.with_suffix("") / "__init__.py"
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SyntaxError, ValueError) as exc:
            raise Unreadable(f"{module}: cannot read {path}: {exc}") from None
        self.module = module
        self.classes: dict[str, ast.ClassDef] = {}
        self.constants: dict[str, ast.expr] = {}
        self.imported: dict[str, tuple[str, str]] = {}  # local name -> (module, name)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                self.classes[node.name] = node
            elif (isinstance(node, ast.Assign) and len(node.targets) == 1
                  and isinstance(node.targets[0], ast.Name)):
                self.constants[node.targets[0].id] = node.value
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                source = _absolute(package, node.module, node.level)
                for alias in node.names:
                    self.imported[alias.asname or alias.name] = (source, alias.name)

    def value(self, expr: ast.expr, what: str):
        """The Python value of a literal, or of a module-level constant holding one."""
        if isinstance(expr, ast.Name) and expr.id in self.constants:
            expr = self.constants[expr.id]
        try:
            return ast.literal_eval(expr)
        except ValueError:
            raise Unreadable(f"{self.module}: {what} is not a literal: "
                             f"{ast.unparse(expr)}") from None


@functools.lru_cache(maxsize=None)
def _source(module: str) -> _Source:
    return _Source(module)


def _absolute(package: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = parts[:len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _class(source: _Source, name: str, seen=()) -> tuple[_Source, ast.ClassDef]:
    """The class `name` means in `source`: defined there, or imported from keras_rewrite."""
    if name in source.classes:
        return source, source.classes[name]
    if name in source.imported and (source.module, name) not in seen:
        module, original = source.imported[name]
        if module == "keras_rewrite" or module.startswith("keras_rewrite."):
            return _class(_source(module), original, seen + ((source.module, name),))
    raise Unreadable(f"{source.module}: cannot follow class {name!r} (defined outside "
                     "keras_rewrite, or not a plain name)")


def _lineage(source: _Source, cls: ast.ClassDef) -> list[tuple[_Source, ast.ClassDef]]:
    """The class and its bases in method resolution order (single inheritance only)."""
    chain = [(source, cls)]
    while cls.bases and not (len(cls.bases) == 1 and isinstance(cls.bases[0], ast.Name)
                             and cls.bases[0].id == "object" and not cls.keywords):
        if len(cls.bases) > 1 or cls.keywords or not isinstance(cls.bases[0], ast.Name):
            raise Unreadable(f"{source.module}.{cls.name}: expected one base class given by "
                             f"name; received ({', '.join(map(ast.unparse, cls.bases))})")
        source, cls = _class(source, cls.bases[0].id)
        if any(c is cls for _, c in chain):
            raise Unreadable(f"{source.module}.{cls.name}: circular base classes")
        chain.append((source, cls))
    return chain


def _attribute(lineage, name: str):
    """The value a class attribute has (its own or inherited), or `_MISSING`."""
    for source, cls in lineage:
        for node in cls.body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name
                                                     for t in node.targets)):
                return source.value(node.value, f"{cls.name}.{name}")
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and node.target.id == name and node.value is not None):
                return source.value(node.value, f"{cls.name}.{name}")
    return _MISSING


def _init_options(lineage) -> tuple:
    """``((name, default or REQUIRED), ...)`` of the first ``__init__`` in `lineage`."""
    for source, cls in lineage:
        init = next((n for n in cls.body if isinstance(n, (ast.FunctionDef,
                                                            ast.AsyncFunctionDef))
                     and n.name == "__init__"), None)
        if init is None:
            continue
        if init.decorator_list:
            raise Unreadable(f"{source.module}.{cls.name}.__init__ is decorated")
        args = init.args
        positional = args.posonlyargs + args.args
        defaults = [REQUIRED] * (len(positional) - len(args.defaults)) + [
            source.value(d, f"{cls.name}.__init__ default") for d in args.defaults]
        found = list(zip((a.arg for a in positional), defaults))[1:]  # without self
        found += [(a.arg, REQUIRED if d is None else
                   source.value(d, f"{cls.name}.__init__ default"))
                  for a, d in zip(args.kwonlyargs, args.kw_defaults)]
        return tuple(found)
    return ()  # object.__init__: no options


def _read_module(module: str) -> list[Declaration]:
    """The declarations of the pass classes defined in `module`, from its source."""
    source = _source(module)
    found = []
    for cls in source.classes.values():
        try:
            lineage = _lineage(source, cls)
        except Unreadable:
            # Not a pass if nothing in it declares a short name; otherwise it must be read.
            if any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "short_name"
                                                     for t in n.targets) for n in cls.body):
                raise
            continue
        if not any((s.module, c.name) == _BASE_PASS for s, c in lineage):
            continue
        short_name = _attribute(lineage, "short_name")
        if short_name is _MISSING or not short_name:
            continue
        summary = _attribute(lineage, "summary")
        structural = _attribute(lineage, "structural")
        outputs = _attribute(lineage, "outputs_unchanged")
        found.append(Declaration(
            short_name, cls.name, module, "" if summary is _MISSING else summary,
            True if structural is _MISSING else structural,
            None if outputs is _MISSING else outputs, _init_options(lineage)))
    return found


# ------------------------------------------------------------------------------ the table


def option_table() -> str:
    """The README's table of passes, made from the declarations."""
    verdicts = {True: "unchanged", None: "the report says, per block or match (equal up to "
                "rounding at best)", False: "changed"}
    rows = ["| short name | pass and options (defaults) | what it does | live model "
            "(RewriteCallback) | inference outputs |", "|---|---|---|---|---|"]
    for name, d in declarations().items():
        args = ", ".join(o if v is REQUIRED else f"{o}={v!r}" for o, v in d.options)
        live = "no" if d.structural else "yes"
        outputs = verdicts.get(d.outputs_unchanged, "see the report")
        rows.append(f"| `{name}` | `{d.class_name}({args})` | {d.summary} | {live} | "
                    f"{outputs} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(option_table())
