"""The pass registry: every pass declares itself once, on its class, and is found from there.

A pass class in a module of this package (or a third-party one registered under the entry-point
group ``keras_rewrite.passes``) declares:

    short_name      the name `rewrite(model, ["name"])`, `--passes` files and the README know it by
    summary         one line: what it does
    structural      False when it can act on a live model too (`apply_in_place`, RewriteCallback)
    outputs_unchanged
                    True: inference outputs stay bit-identical; None: equal up to rounding or
                    it depends (the report says per match); False: they change

and its options are its ``__init__`` arguments with their defaults. `passes()` collects them,
`option_table()` prints the README's table of passes (a test checks the README holds it).

Adding a built-in pass is one file in this package (a `Pass` subclass with a `short_name`) plus
its test. A third-party package adds, in its pyproject.toml:

    [project.entry-points."keras_rewrite.passes"]
    my_pass = "my_package.my_module:MyPass"
"""
from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from importlib import metadata

from .base import Pass
from ..errors import PassError

__all__ = ["passes", "options", "option_table"]

_NOT_PASSES = {"base", "registry"}


@functools.lru_cache(maxsize=None)
def passes() -> dict[str, type]:
    """{short name: pass class}: this package's passes, then entry-point passes."""
    found: dict[str, type] = {}
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _NOT_PASSES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        for cls in vars(module).values():
            if (isinstance(cls, type) and issubclass(cls, Pass) and cls.__module__ ==
                    module.__name__ and getattr(cls, "short_name", None)):
                _add(found, cls, f"module {module.__name__}")
    for entry in metadata.entry_points(group="keras_rewrite.passes"):
        try:
            cls = entry.load()
        except Exception as exc:
            raise PassError(f"entry point {entry.name!r} of group 'keras_rewrite.passes' "
                            f"({entry.value}) failed to load: {type(exc).__name__}: {exc}") from exc
        if not (isinstance(cls, type) and getattr(cls, "short_name", None)):
            raise PassError(f"entry point {entry.name!r} ({entry.value}): expected a pass class "
                            f"with a short_name; received {cls!r}")
        _add(found, cls, f"entry point {entry.value}")
    return found


def _add(found, cls, where):
    other = found.get(cls.short_name)
    if other is not None and other is not cls:
        raise PassError(f"two passes are named {cls.short_name!r}: {other.__module__}."
                        f"{other.__name__} and {cls.__name__} ({where}); expected one")
    found[cls.short_name] = cls


def options(cls) -> list[tuple[str, object]]:
    """(name, default) of each option of a pass: its ``__init__`` arguments."""
    signature = inspect.signature(cls.__init__)
    return [(p.name, p.default) for p in list(signature.parameters.values())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def option_table() -> str:
    """The README's table of passes, made from the declarations."""
    verdicts = {True: "unchanged", None: "the report says, per block or match (equal up to "
                "rounding at best)", False: "changed"}
    rows = ["| short name | pass and options (defaults) | what it does | live model "
            "(RewriteCallback) | inference outputs |", "|---|---|---|---|---|"]
    for name, cls in passes().items():
        args = ", ".join(f"{o}={d!r}" for o, d in options(cls))
        live = "no" if getattr(cls, "structural", True) else "yes"
        outputs = verdicts.get(getattr(cls, "outputs_unchanged", None), "see the report")
        rows.append(f"| `{name}` | `{cls.__name__}({args})` | {cls.summary} | {live} | "
                    f"{outputs} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(option_table())
