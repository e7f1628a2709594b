"""`RenameLayers`: new names for a model's layers (weights, wiring and classes kept)."""
from __future__ import annotations

import networkx as nx

from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.surgery._common import locate
from keras_rewrite.surgery.errors import LayerNotFoundError, SurgeryError


def _check_name(new, old, argument):
    if not isinstance(new, str) or not new or "/" in new:
        raise SurgeryError(f"{argument}: the new name of layer '{old}' must be a non-empty str "
                           f"without '/' (Keras refuses it in a layer name); received {new!r}")


def rename_in_graph(graph, names: dict, argument="mapping") -> list:
    """Rename the layers of one graph (not nested) by `names` ({old: new}); return Changes.

    Node ids follow (``old`` -> ``new``, ``old:k`` -> ``new:k``); a nested model's graph takes
    its new name too. Refused when two layers would share a name."""
    present = {d["spec"].name for _, d in graph.nodes(data=True) if d.get("spec") is not None}
    for old, new in names.items():
        _check_name(new, old, argument)
    final = [names.get(n, n) for n in present]
    clash = sorted({n for n in final if final.count(n) > 1})
    if clash:
        raise SurgeryError(f"{argument}: after renaming, model '{graph.graph['name']}' would "
                           f"have several layers named {clash}; expected unique names")
    specs, relabel, changes = {}, {}, []
    for node, data in graph.nodes(data=True):
        spec = data.get("spec")
        if spec is None or spec.name not in names:
            continue
        old, new = spec.name, names[spec.name]
        if id(spec) not in specs:
            config = dict(spec.config)
            config["name"] = new
            renamed = spec.replace(name=new, config=config)
            if renamed.subgraph is not None:
                renamed.subgraph.graph["name"] = new
            specs[id(spec)] = renamed
            changes.append(Change(new, "renamed", f"was '{old}'"))
        data["spec"] = specs[id(spec)]
        if node == old:
            relabel[node] = new
        elif node.startswith(old + ":"):
            relabel[node] = new + node[len(old):]
    taken = set(graph.nodes) - set(relabel)
    bad = sorted(v for v in relabel.values() if v in taken)
    if bad:
        raise SurgeryError(f"{argument}: new names {bad} are node ids already used in model "
                           f"'{graph.graph['name']}'")
    nx.relabel_nodes(graph, relabel, copy=False)
    graph.graph["inputs"] = [relabel.get(n, n) for n in graph.graph["inputs"]]
    graph.graph["outputs"] = [relabel.get(n, n) for n in graph.graph["outputs"]]
    return changes


class RenameLayers(Pass):
    """Rename layers: every top-level layer (inputs and nested models included) gets `prefix`
    in front of its name, or `fn(name)`; or exactly the layers of `mapping` ({old: new}; a key
    may be a nested path "outer/inner", which renames the inner layer). Give exactly one."""

    short_name = "rename_layers"
    summary = "renames layers by a prefix, a mapping {old: new} or a function"
    structural = True
    outputs_unchanged = True

    def __init__(self, prefix=None, mapping=None, fn=None):
        given = [k for k, v in (("prefix", prefix), ("mapping", mapping), ("fn", fn))
                 if v is not None]
        if len(given) != 1:
            raise SurgeryError(f"expected exactly one of prefix, mapping, fn; received "
                               f"{given or 'none'}")
        if prefix is not None and not isinstance(prefix, str):
            raise SurgeryError(f"expected prefix to be a str, received {type(prefix).__name__}")
        if mapping is not None and not isinstance(mapping, dict):
            raise SurgeryError(f"expected mapping to be a dict {{old: new}}, received "
                               f"{type(mapping).__name__}")
        if fn is not None and not callable(fn):
            raise SurgeryError(f"expected fn to be callable, received {type(fn).__name__}")
        self.prefix, self.mapping, self.fn = prefix, mapping, fn

    def get_config(self):
        return None if self.fn is not None else {"prefix": self.prefix, "mapping": self.mapping}

    def run(self, graph) -> PassResult:
        if self.mapping is None:
            rule = (lambda n: self.prefix + n) if self.prefix is not None else self.fn
            names = {d["spec"].name: rule(d["spec"].name) for _, d in graph.nodes(data=True)
                     if d.get("spec") is not None}
            argument = "prefix" if self.prefix is not None else "fn"
            changes = rename_in_graph(graph, {o: n for o, n in names.items() if o != n}, argument)
        else:
            by_graph = {}
            for key, new in self.mapping.items():
                g, node = locate(graph, key, inline=False, argument="mapping")
                by_graph.setdefault(id(g), (g, {}))[1][g.nodes[node]["spec"].name] = new
            if not by_graph:
                raise LayerNotFoundError("mapping: expected at least one layer to rename, "
                                         "received {}")
            changes = []
            for g, names in by_graph.values():
                changes += rename_in_graph(g, names)
        return PassResult(self.name, bool(changes), changes, outputs_unchanged=True)
