"""The package's layers import downwards only, and no module imports itself back.

Every import counts, at module level or inside a function: a lazy import upwards is still an
arrow pointing up. Layers, bottom to top (README, "Layout"):

    errors, report, _import_hooks           what every layer may use
    _quiet                                  TensorFlow's start-up noise kept quiet
    _keras                                  the one module touching Keras internals
    files                                   model files (uses errors only)
    graph                                   the IR
    passes                                  rewrite passes over the IR
    verify                                  proof that two models (or layers) are the same
    rebuild                                 graph -> model, weights and state carried, checked
    surgery, analysis                       model edits; diff, lint, picture
    api, conversion, callback               the library's faces
    cli                                     the command line
    keras_rewrite (__init__, __main__)      the package's public names
"""
import ast
import pathlib

import networkx as nx

import keras_rewrite

PACKAGE = pathlib.Path(keras_rewrite.__file__).parent
LAYERS = [["errors", "report", "_import_hooks"], ["_quiet"], ["_keras"], ["files"], ["graph"],
          ["passes"], ["verify"], ["rebuild"], ["surgery", "analysis"],
          ["api", "conversion", "callback"], ["cli"], ["__init__", "__main__"]]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}
# What a layer may use besides the layers below it: files reads no model, so it needs errors only.
ONLY = {"files": {"errors", "files"}}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("keras_rewrite",) + tuple(p for p in parts if p != "__init__"))
        yield name, parts[0], path


def _imports(path, name, names):
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:  # `from keras_rewrite.x import y`: y may be a module
                yield f"{module}.{alias.name}" if f"{module}.{alias.name}" in names else module


def _graph():
    names = {name: (top, path) for name, top, path in _modules()}
    graph = nx.DiGraph()
    for name, (top, path) in names.items():
        graph.add_node(name, top=top)
        for target in _imports(path, name, names):
            if target in names and target != name:
                graph.add_edge(name, target)
    return graph


def _layer(graph, module):
    return graph.nodes[module]["top"]


def test_every_top_level_module_and_folder_has_a_layer():
    tops = {top for _, top, _ in _modules()}
    assert tops <= set(RANK), sorted(tops - set(RANK))


def test_arrows_point_down():
    graph = _graph()
    upward = []
    for a, b in graph.edges:
        la, lb = _layer(graph, a), _layer(graph, b)
        if lb == la or a == "keras_rewrite":
            continue
        allowed = ONLY.get(la)
        if (allowed is not None and lb not in allowed) or RANK[lb] >= RANK[la]:
            upward.append(f"{a} -> {b}")
    assert not upward, upward


def test_no_import_cycle():
    graph = _graph()
    graph.remove_node("keras_rewrite")  # the package's lazy names point at everything
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, cycles[:5]


def test_at_most_twelve_modules_at_the_top_and_a_thin_adapter():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    assert len((PACKAGE / "_keras.py").read_text().splitlines()) <= 400
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc, f"{folder.name}/__init__.py has no docstring saying what the layer is"
