"""`Truncate` and `ReplaceHead`: cut a model at a layer's output, and put a new head there."""
from __future__ import annotations


from keras_rewrite.graph.edit import insert_after
from keras_rewrite.passes.base import Pass
from keras_rewrite.report import Change, PassResult
from keras_rewrite.surgery._common import (add_output, clear_outputs, locate, new_spec,
                                           prune_dead, single_output)
from keras_rewrite.surgery.errors import SurgeryError


def _cut(graph, at):
    """Make the output of `at` the model's only output; return (node, dropped layer names)."""
    g, node = locate(graph, at, inline=True, argument="at")
    shape = single_output(g, node, at, "at")
    if graph.nodes[node]["kind"] == "input":
        raise SurgeryError(f"at={at!r}: expected a layer to cut at, received the model's input")
    clear_outputs(graph)
    add_output(graph, node, 0, shape)
    graph.graph["output_structure"] = 0
    return node, prune_dead(graph)


class Truncate(Pass):
    """The output of layer `at` (a name or nested path "outer/inner") becomes the model's
    output; every layer after it is dropped."""

    short_name = "truncate"
    summary = "makes a layer's output the model's output, dropping the layers after it"
    structural = True
    outputs_unchanged = False

    def __init__(self, at):
        self.at = at

    def get_config(self):
        return {"at": self.at}

    def run(self, graph) -> PassResult:
        node, dropped = _cut(graph, self.at)
        changes = [Change(graph.nodes[node]["spec"].name, "truncated", "its output is the "
                          "model's output")]
        changes += [Change(name, "deleted", f"after '{self.at}'") for name in dropped]
        return PassResult(self.name, True, changes, outputs_unchanged=False)


class ReplaceHead(Pass):
    """Cut the model at `at` (see `Truncate`) and feed its output to `head`: a layer, a list of
    layers (called in order) or a keras Model (nested; its weights kept), or their serialized
    configs (`keras.saving.serialize_keras_object`) as a file would give them."""

    short_name = "replace_head"
    summary = "cuts the model at a layer and puts a new head (layers or a model) on it"
    structural = True
    outputs_unchanged = False

    def __init__(self, at, head):
        self.at = at
        self.head = head

    def run(self, graph) -> PassResult:
        head = self.head if isinstance(self.head, (list, tuple)) else [self.head]
        if not head:
            raise SurgeryError("expected head to be a layer, a list of layers or a model, "
                               "received an empty list")
        node, dropped = _cut(graph, self.at)
        at_name = graph.nodes[node]["spec"].name
        changes = [Change(name, "deleted", f"after '{at_name}'") for name in dropped]
        for i, item in enumerate(head):
            spec = new_spec(graph, item, f"head[{i}]" if len(head) > 1 else "head")
            if spec.subgraph is not None and len(spec.subgraph.graph["inputs"]) != 1:
                raise SurgeryError(f"head model '{spec.name}' has "
                                   f"{len(spec.subgraph.graph['inputs'])} inputs; expected one "
                                   f"(it is fed the output of '{at_name}')")
            node = insert_after(graph, node, spec)
            changes.append(Change(spec.name, "inserted", f"head, after '{at_name}'"
                                  if i == 0 else "head"))
        graph.nodes[graph.graph["outputs"][0]]["output_shapes"] = None  # the head's own
        return PassResult(self.name, True, changes, outputs_unchanged=False)
