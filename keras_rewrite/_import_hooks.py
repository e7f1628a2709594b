"""Run our code around the first import of a module someone else imports (Keras, TensorFlow).

`import keras_rewrite` must cost nothing, yet two things have to happen when Keras arrives:
TensorFlow's start-up notices go to /dev/null while it loads (`_quiet`), and the model class
saved files refer to (`RewrittenFunctional`) must be registered before any file is loaded, since
Keras imports modules by name only for its own packages. A finder on ``sys.meta_path`` sees
the first import of such a module, lets the usual finders find it, and wraps its loader:
``around`` (a context manager) holds while the module runs, ``after`` is called once it has.
If the module is already imported, ``after`` runs at once and ``around`` is moot.

When Keras is first imported by one of our own modules, ``after`` would run while that module
is half-initialized (registering `RewrittenFunctional` imports it again): the finder also sees
the imports of this package's modules, and holds ``after`` until none of them is running.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import sys

__all__ = ["on_import"]


_PACKAGE = __name__.split(".")[0] + "."


class _Loader(importlib.abc.Loader):
    def __init__(self, finder, loader, around, after):
        self._finder, self._loader, self._around, self._after = finder, loader, around, after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        finder = self._finder
        finder.hooks.pop(module.__name__, None)
        finder.running += 1
        try:
            with self._around():
                self._loader.exec_module(module)
        finally:
            finder.running -= 1
        finder.pending.extend(self._after)
        if not finder.running:
            while finder.pending:
                finder.pending.pop(0)()

    def __getattr__(self, name):  # resource readers, get_filename, ...: the real loader's
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.hooks = {}  # module name -> (list of around, list of after)
        self.running = 0  # modules of this package, or hooked ones, being executed now
        self.pending = []  # `after` callbacks waiting for `running` to be 0

    def find_spec(self, name, path, target=None):
        if name in self.hooks:  # kept until the module runs: `find_spec` alone imports nothing
            arounds, afters = self.hooks[name]
        elif name.startswith(_PACKAGE) and self.hooks:
            arounds, afters = [], []
        else:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec

        @contextlib.contextmanager
        def around():
            with contextlib.ExitStack() as stack:
                for context in arounds:
                    stack.enter_context(context())
                yield

        spec.loader = _Loader(self, spec.loader, around, afters)
        return spec


_FINDER = _Finder()


def on_import(name: str, *, around=None, after=None) -> None:
    """Hold `around()` while top-level module `name` is first imported; call `after()` once it is.

    Already imported: `after()` runs now.
    """
    if name in sys.modules:
        if after is not None:
            after()
        return
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    arounds, afters = _FINDER.hooks.setdefault(name, ([], []))
    if around is not None:
        arounds.append(around)
    if after is not None:
        afters.append(after)
