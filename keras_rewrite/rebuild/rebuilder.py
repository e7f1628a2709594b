"""`to_model`: a graph (see `keras_rewrite.graph.schema`) becomes a working Keras model again.

Layers are re-created from their specs in topological order, keeping their names; a shared
spec becomes one shared layer; nested models are rebuilt from their own graphs. Weights are
carried over by `keras_rewrite.rebuild.weights` right after each layer is built, and the new layers
are built with zero initializers first, since their values are about to be overwritten.
Then `keras_rewrite.rebuild.checks` compares output shapes with the original's.

A pass that promises to carry every original weight (a new input shape, a new dtype policy)
lists its name in the graph attribute ``weights_must_fit``: a layer no pass gave new weights
whose weights no longer fit what it receives (Flatten -> Dense on a new input shape) is then a
`ShapeMismatchError` naming the layer, the input shape it received and from where, and the
shape it had, instead of a layer that silently starts afresh.
"""
from __future__ import annotations

import contextlib
import re
import shutil
import tempfile

import keras
import networkx as nx

from keras_rewrite import _keras
from keras_rewrite.passes import live, quantize
from keras_rewrite.rebuild import recursion
from keras_rewrite.verify import layer_state
from keras_rewrite.rebuild import model_class
from keras_rewrite.rebuild import layer_copy
from keras_rewrite.rebuild import checks
from keras_rewrite.verify import fidelity
from keras_rewrite.errors import RebuildError
from keras_rewrite.rebuild.rewritten_model import (CACHED_PATH_METHODS, RewrittenFunctional,
                                                   class_keeping_rewrite, refuse_cached_path)
from keras_rewrite.graph.schema import (Slot, configs_equal, graph_unchanged, iter_graphs, map_structure,
                                        single_input_edge, topological_order, wiring_changes)
from keras_rewrite.report import Report
from keras_rewrite.rebuild.weights import initialize_new_weights, set_pass_weights, transfer_weights


def to_model(graph: nx.MultiDiGraph, *, report: Report | None = None,
             check: bool = True, move: bool = False) -> keras.Model:
    """Rebuild a Keras model from `graph`.

    Args:
        graph: a graph made by `to_graph` (and possibly edited by passes).
        report: a `Report` to record, per layer, which weights were carried over, left new
            (and why) or dropped. A new one is used when omitted.
        check: compare the rebuilt model's output shapes with the original's and raise
            `ShapeMismatchError` naming the first layer whose output shape changed.
        move: layers no pass changed take the original's variables themselves instead of
            copies (no memory for a second set of weights; the original must not be used
            afterwards: `rewrite(..., copy=False)` marks it so).

    Returns:
        A new model; the original model and its layers are not touched.
    """
    report = report if report is not None else Report()
    size = sum(g.number_of_nodes() for g in iter_graphs(graph))
    with recursion.recursion_limit_for(size):
        rebuilder = _Rebuilder(report, move)
        rebuilder.weights_must_fit = list(graph.graph.get("weights_must_fit") or ())
        rebuilder.quantize_marks = quantize.marks_by_spec(graph)
        try:
            model = rebuilder.build(graph)
        finally:
            rebuilder.close()
        if check:
            checks.check_output_shapes(graph, model, rebuilder.shapes[id(graph)])
    return model


class _Rebuilder:
    def __init__(self, report: Report, move: bool = False):
        self.report = report
        self.move = move
        self.layers = {}  # id(spec) -> new layer (or model), so shared specs stay shared
        self.shapes = {}  # id(graph) -> {node id: [output shapes]}
        self.layer_map = {}  # id(original layer) -> new layer, for model attributes
        self.copied = {}  # id(spec) -> why the layer was copied from its object
        self.state_copies = set()  # id(spec) of those copied for state beyond their config
        self.state_checked = set()  # id(spec) of layers whose state was compared
        self.source_states = {}  # id(spec) -> the original's layer_state, read once
        self._copyable = {}  # id(spec) -> _copyable(spec), computed once (it compares configs)
        self._new_policy = {}  # id(spec) -> _policy_only_change(spec), computed once
        self._scratch = None
        self.weights_must_fit = []  # passes that carry every weight (graph attribute)
        self.quantize_marks = {}  # id(spec) -> the quantize pass's marks (passes.quantize)

    def assets_dir(self) -> str:
        """A scratch folder for lookup vocabularies in transit, removed by `close`."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="keras_rewrite_assets_")
        return self._scratch

    def close(self):
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def layer_for(self, spec):
        layer = self.layers.get(id(spec))
        if layer is None:
            if spec.subgraph is not None:
                layer = self.build(spec.subgraph)
            elif self.move and self.copyable(spec) and not isinstance(spec.source,
                                                                    _keras.InputLayer):
                layer = self.copy(spec, "variables moved (copy=False)")
            elif (changed := _regularizers_only_change(spec)) is not None:
                layer = self.copy(spec, "quantized or LoRA state kept; the regularizers set "
                                        "on the copy")
                for key, value in changed.items():
                    regularizer = keras.regularizers.get(value)
                    live.set_live_regularizer(layer, key, _STATEFUL_REGULARIZED[key], False,
                                              regularizer, regularizer)
            elif spec.config_error and (self.copyable(spec) or self.new_policy(spec)):
                layer = self.copy(spec, spec.config_error)
            else:
                try:
                    with layer_copy.creation_scope(spec.source, building_inside=True):
                        layer = _keras.new_operation(spec.cls, spec.config, spec.source)
                except Exception as exc:
                    if not (self.copyable(spec) or self.new_policy(spec)):
                        raise RebuildError(
                            f"layer '{spec.name}': could not re-create {spec.class_name} from "
                            f"its config: {type(exc).__name__}: {exc}") from exc
                    layer = self.copy(spec, f"from_config failed ({type(exc).__name__}: "
                                            f"{_first_line(exc)})")
            self.layers[id(spec)] = layer
            if spec.source is not None:
                self.layer_map[id(spec.source)] = layer
        return layer

    def copyable(self, spec) -> bool:
        known = self._copyable.get(id(spec))
        if known is None:
            known = self._copyable[id(spec)] = _copyable(spec)
        return known

    def new_policy(self, spec) -> str | None:
        """The new dtype policy of a layer a pass changed in nothing else (see
        `_policy_only_change`): such a layer can be copied from its object too."""
        if id(spec) not in self._new_policy:
            self._new_policy[id(spec)] = _policy_only_change(spec)
        return self._new_policy[id(spec)]

    def copy(self, spec, why):
        """Carry a layer over by copying the object (see layer_copy.copy_layer_object): an
        untouched one, or one whose dtype policy alone changed (set on the copy)."""
        try:
            layer = layer_copy.copy_layer_object(spec.source, move_variables=self.move)
            policy = None if self.copyable(spec) else self.new_policy(spec)
            if policy is not None:
                layer_copy.set_copied_dtype_policy(layer, spec.source, policy)
                why = f"{why}; dtype policy {policy} set on the copy"
        except Exception as exc:
            raise RebuildError(
                f"layer '{spec.name}' ({spec.class_name}) cannot be carried over: {why}, and "
                f"copying the layer object failed too ({type(exc).__name__}: {exc}). Give "
                f"{spec.class_name} a complete get_config() (every __init__ argument)") from exc
        self.copied[id(spec)] = why
        self.layers[id(spec)] = layer
        self.layer_map[id(spec.source)] = layer
        return layer

    def call(self, node_id, data, inputs, inputs_as_before=False, sources=None):
        """Call `data`'s layer on `inputs` ({slot: tensor}); `sources` ({slot: (producer id,
        the producer's output shape in the original model or None)}) names them in errors."""
        spec = data["spec"]
        named = _named_inputs(inputs, sources)
        layer = self.layer_for(spec)
        first_build = spec.subgraph is None and not getattr(layer, "built", True)
        args, kwargs = map_structure(
            data["call_args"], lambda x: inputs[x.index] if isinstance(x, Slot) else x)
        zeroed = first_build and spec.source is not None
        init = layer_copy.zero_initializers(layer) if zeroed else contextlib.nullcontext()
        scope = layer_copy.creation_scope(spec.source) if first_build \
            else contextlib.nullcontext()
        try:
            with init, scope:
                outputs = layer(*args, **kwargs)
        except Exception as exc:
            if not (first_build and (self.copyable(spec) or self.new_policy(spec))
                    and id(spec) not in self.copied):
                raise _call_error(spec, exc, named) from exc
            layer = self.copy(spec, f"the layer re-created from its config fails when called "
                                    f"({type(exc).__name__}: {_first_line(exc)})")
            zeroed = False
            outputs = self.call_copy(spec, layer, args, kwargs, named)
        if (first_build and (self.copyable(spec) or self.new_policy(spec))
                and id(spec) not in self.copied and not _keras.is_keras_layer(layer)):
            # Keras's own layers round-trip through their configs (the zoo shows it on every
            # keras.applications model); other classes are checked, at a get_config each.
            why = _unfaithful(spec, layer, inputs_as_before)
            if why:  # from_config built something else: never find out from predictions
                layer = self.copy(spec, why)
                zeroed = False
                outputs = self.call_copy(spec, layer, args, kwargs, named)
        if (spec.subgraph is None and self.copyable(spec) and id(spec) not in self.copied
                and id(spec) not in self.state_checked):
            self.state_checked.add(id(spec))  # once, at the first call (built then)
            why = _state_not_in_config(spec, layer, inputs_as_before, self.source_states)
            if why:  # quantized or LoRA sub-layers, a frozen part: the object holds them
                layer = self.copy(spec, why)
                self.state_copies.add(id(spec))  # its config re-creates it: a file loads
                zeroed = False
                outputs = self.call_copy(spec, layer, args, kwargs, named)
        self.carry(spec, layer, zeroed, named, inputs_as_before)
        return keras.tree.flatten(outputs)

    def carry(self, spec, layer, zeroed: bool, inputs=None, same_inputs=True) -> None:
        """Once per rebuilt layer, right after it is built: its state (weights.py), initial
        values for what could not be carried, sub-layer regularizers, a pass's weights.
        `inputs` (see `_named_inputs`) says what the layer received, for errors."""
        if (spec.subgraph is not None or not isinstance(layer, keras.layers.Layer)
                or layer.name in self.report.layers):
            return
        # Every rebuilt layer is reported, weightless ones too (built at creation).
        record = self.report.layers[layer.name] = transfer_weights(
            spec, layer, copied_because=self.copied.get(id(spec)), assets_dir=self.assets_dir)
        if self.weights_must_fit and spec.weights is None:
            checks.check_weights_fit(spec, record, inputs, self.weights_must_fit)
        if zeroed:
            initialize_new_weights(spec, layer, record)
        if spec.sublayer_regularizers:
            layer_copy.set_sublayer_regularizers(layer, spec.sublayer_regularizers)
        if spec.weights is not None:
            set_pass_weights(spec, layer, record)
        shared = []
        if type(layer) is type(spec.source):  # copied ones too: a copy copies what it shares
            shared = layer_copy.retie_shared_sublayers(spec.source, layer, self.layer_map)
        if id(spec) not in self.copied and type(layer) is type(spec.source):
            layer_copy.carry_trainable_flags(spec.source, layer)
        fidelity.check_layer(spec, layer, same_inputs=same_inputs, carried=record.carried,
                             shared=shared, expected=self.source_states.get(id(spec)),
                             untouched=self.copyable(spec))
        if id(spec) in self.quantize_marks:  # after the proof: the float layer is the original
            quantize.apply_marked(self.quantize_marks[id(spec)], layer)

    def call_copy(self, spec, layer, args, kwargs, inputs):
        try:
            return layer(*args, **kwargs)
        except Exception as exc:
            raise _call_error(spec, exc, inputs) from exc

    def build(self, graph):
        if (graph.graph["model_class"] == "Sequential" and _is_chain(graph)
                and not _sublayer_regularizers(graph)):
            return self.build_sequential(graph)
        produced = {}
        shapes = {}
        for node_id in topological_order(graph):
            data = graph.nodes[node_id]
            kind = data["kind"]
            if kind == "output":
                continue
            if kind == "input":
                layer = self.layer_for(data["spec"])
                produced[node_id] = [layer.output]
            else:
                inputs, sources = {}, {}
                as_before = True  # every input has the shape it had in the original model
                for producer, _, edge in graph.in_edges(node_id, data=True):
                    tensor = produced[producer][edge["tensor_index"]]
                    inputs[edge["slot"]] = tensor
                    original = graph.nodes[producer]["output_shapes"]
                    before = None if original is None else original[edge["tensor_index"]]
                    sources[edge["slot"]] = (producer, before)
                    as_before = as_before and before == tuple(tensor.shape)
                produced[node_id] = self.call(node_id, data, inputs, as_before, sources)
            shapes[node_id] = [tuple(t.shape) for t in produced[node_id]]
        outputs = []
        for out_id in graph.graph["outputs"]:
            ((producer, _, edge),) = graph.in_edges(out_id, data=True)
            outputs.append(produced[producer][edge["tensor_index"]])
        inputs = [produced[n][0] for n in graph.graph["inputs"]]
        model = self.new_model(
            graph,
            inputs=map_structure(graph.graph["input_structure"], inputs.__getitem__),
            outputs=map_structure(graph.graph["output_structure"], outputs.__getitem__))
        _keras.set_own_trainable(model, graph.graph.get("trainable", True))
        _set_own_policy(model, graph)
        self.shapes[id(graph)] = shapes
        return model

    def new_model(self, graph, inputs, outputs):
        model = self._new_model(graph, inputs, outputs)
        cls = graph.graph.get("model_type")
        if type(model) is not cls or model_class.model_class_of(model)[1]:
            # Saved as a graph: every layer is saved by its own config.
            unsaveable = [data["spec"].name for _, data in graph.nodes(data=True)
                          if data["kind"] == "layer" and id(data["spec"]) not in
                          self.state_copies and "moved" not in self.copied.get(
                              id(data["spec"]), "moved")]
            if unsaveable:
                self.report.notes.append(
                    f"model '{graph.graph['name']}' works, but a file of it will not load: "
                    f"{_plural_names(unsaveable)} cannot be re-created from "
                    f"{'its config' if len(unsaveable) == 1 else 'their configs'} (see `how` "
                    f"in this report's layers); a complete get_config() in "
                    f"{'its class' if len(unsaveable) == 1 else 'their classes'} fixes it")
        return model

    def _new_model(self, graph, inputs, outputs):
        """The rebuilt Functional model: of the original's own class where that keeps the rewrite.

        - A class that saves its graph (Functional, Sequential, a subclass keeping Functional's
          `get_config`) stays itself, or becomes a `RewrittenFunctional` when sub-layer
          regularizers must be saved beside the graph.
        - A class that saves itself as constructor arguments (KerasHub backbones and tasks)
          stays itself while nothing changed; once a pass changed something inside, it becomes
          its `class_keeping_rewrite` subclass (the same methods and attributes; its file holds
          the original's arguments and the passes, see `pipeline._record_recipe`).
        """
        name = graph.graph["name"]
        source = graph.graph.get("source")
        cls = graph.graph.get("model_type", _keras.Functional)
        settings = _sublayer_regularizers(graph)
        if source is None or cls is _keras.Functional or not issubclass(cls, _keras.Functional):
            if settings:  # only this class saves them (see rebuild.rewritten_model)
                model = model_class.new_functional(RewrittenFunctional, inputs, outputs, name)
                model.set_sublayer_regularizers(settings)
                return model
            return keras.Model(inputs=inputs, outputs=outputs, name=name)
        _, saves_graph = model_class.model_class_of(source)
        changed = bool(settings) or not graph_unchanged(graph) or _inputs_changed(graph)
        if saves_graph and settings:
            self.report.notes.append(
                f"model '{name}': rebuilt as RewrittenFunctional, not {cls.__name__}, so "
                f"that the regularizers set inside {', '.join(sorted(settings))} are saved "
                f"with it (load it after `import keras_rewrite`)")
            model = model_class.new_functional(RewrittenFunctional, inputs, outputs, name)
            model.set_sublayer_regularizers(settings)
            return model
        kept = cls if saves_graph or not changed else class_keeping_rewrite(cls)
        try:
            model = model_class.new_functional(kept, inputs, outputs, name)
            stale = model_class.carry_model_attributes(source, model, self.layer_map)
        except Exception as exc:
            self.report.notes.append(
                f"model '{name}': rebuilt as a plain Functional, not {cls.__name__}: "
                f"re-creating {cls.__name__} around the graph failed ({type(exc).__name__}: "
                f"{_first_line(exc)})")
            return keras.Model(inputs=inputs, outputs=outputs, name=name)
        if kept is not cls:
            if settings:
                model.set_sublayer_regularizers(settings)
            reason = _cached_path_mismatch(graph, stale)
            if reason and any(callable(getattr(cls, m, None)) for m in CACHED_PATH_METHODS):
                refuse_cached_path(model, reason)
                self.report.notes.append(f"model '{name}': generate() is refused: {reason}")
        return model

    def build_sequential(self, graph):
        order = topological_order(graph)
        input_id = graph.graph["inputs"][0]
        input_layer = self.layer_for(graph.nodes[input_id]["spec"])
        chain = [n for n in order if graph.nodes[n]["kind"] in ("layer", "op")]
        specs = [graph.nodes[n]["spec"] for n in chain]
        layers = [self.layer_for(spec) for spec in specs]
        if graph_unchanged(graph):
            self.build_outside_sequential(graph, chain, specs, layers)
        fresh = [(spec, layer) for spec, layer in zip(specs, layers)
                 if spec.subgraph is None and not layer.built]
        with contextlib.ExitStack() as stack:
            for spec, layer in fresh:
                if spec.source is not None:
                    stack.enter_context(layer_copy.zero_initializers(layer))
            try:
                model = keras.Sequential([input_layer, *layers], name=graph.graph["name"])
            except Exception as exc:
                self.diagnose_chain(graph, chain, input_id, input_layer, layers)
                raise RebuildError(f"Sequential model '{graph.graph['name']}' could not be "
                                   f"rebuilt: {type(exc).__name__}: {exc}") from exc
        zeroed = {id(layer) for spec, layer in fresh if spec.source is not None}
        previous = (input_id, input_layer)
        for node_id, spec, layer in zip(chain, specs, layers):
            self.carry(spec, layer, id(layer) in zeroed,
                       _output_of(*previous, graph.nodes[previous[0]]["output_shapes"]),
                       same_inputs=False)  # shapes: compared by the output check
            previous = (node_id, layer)
        _keras.set_own_trainable(model, graph.graph.get("trainable", True))
        _set_own_policy(model, graph)
        shapes = {input_id: [tuple(input_layer.output.shape)]}
        for node_id, layer in zip(chain, layers):
            shapes[node_id] = [tuple(t.shape) for t in keras.tree.flatten(layer.output)]
        self.shapes[id(graph)] = shapes
        return model

    def build_outside_sequential(self, graph, chain, specs, layers) -> None:
        """Build first the layers whose variables the original did not create inside this
        Sequential's name scope (a preprocessing layer adapted on its own, then put in a
        ``data_augmentation`` Sequential): built by the Sequential they would get its name in
        their paths. Only while nothing changed here: the original's shapes still hold."""
        prefix = graph.graph["name"] + "/"
        for node_id, spec, layer in zip(chain, specs, layers):
            weights = getattr(spec.source, "weights", None)
            edge = single_input_edge(graph, node_id)
            if (spec.subgraph is not None or layer.built or not weights or edge is None
                    or weights[0].path.startswith(prefix)):
                continue
            producer, data = edge
            shape = (graph.nodes[producer]["output_shapes"] or [None])[data["tensor_index"]]
            if shape is None:
                continue
            with layer_copy.creation_scope(spec.source), layer_copy.zero_initializers(layer):
                layer.build(shape)

    def diagnose_chain(self, graph, chain, input_id, input_layer, layers) -> None:
        """After a Sequential failed to build: call its layers one by one and raise the
        precise error of the first that cannot take its input (see `_call_error`)."""
        tensor, previous = input_layer.output, input_id
        for node_id, layer in zip(chain, layers):
            before = graph.nodes[previous]["output_shapes"]
            named = [(previous, tuple(tensor.shape), before[0] if before else None)]
            try:
                tensor = layer(tensor)
            except Exception as exc:
                raise _call_error(graph.nodes[node_id]["spec"], exc, named) from exc
            previous = node_id


def _set_own_policy(model, graph) -> None:
    """Give a rebuilt model the graph's own dtype policy: the original's policy object while
    no pass changed it (a quantized model's DTypePolicyMap too), else the new name."""
    source, policy = graph.graph.get("source"), graph.graph.get("dtype_policy")
    if source is not None and policy == source.dtype_policy.name:
        policy = source.dtype_policy
    if policy is not None and model.dtype_policy.name != getattr(policy, "name", policy):
        model.dtype_policy = policy


def _inputs_changed(graph) -> bool:
    """True when a pass edited an input's config (a new shape) here or in a nested model
    (`graph_unchanged` does not look at inputs)."""
    return any(data["kind"] == "input" and data["spec"].original_config is not None
               and not configs_equal(data["spec"].config, data["spec"].original_config)
               for g in iter_graphs(graph) for _, data in g.nodes(data=True))


def _cached_path_mismatch(graph, stale) -> str | None:
    """Why a method that calls the model's layers by attribute (a CausalLM's call_with_cache)
    no longer computes what the rebuilt graph does, or None.

    It still does when every pass kept the wiring (the same calls on the same tensors; a layer
    replaced in place, as SpatialDropout for Dropout, is reached through its attribute, which
    points at the new layer) and no attribute points at a layer the rewrite removed.
    """
    changes = wiring_changes(graph)
    if changes:
        return (f"a pass changed the graph ({'; '.join(changes[:3])}), and the cached path "
                "calls the layers by attribute, not through the graph, so it would generate "
                "with the old layout; predict() and fit() follow the graph")
    if stale:
        return (f"{_plural_names(stale)} held by attribute left the graph, and the cached "
                "path would still call them; predict() and fit() follow the graph")
    return None


def _plural_names(names) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"layer {shown}" if len(names) == 1 else f"layers {shown}{more}"


def _sublayer_regularizers(graph) -> dict:
    """{layer name: spec.sublayer_regularizers} for this graph's own layers that have some."""
    return {data["spec"].name: data["spec"].sublayer_regularizers
            for _, data in graph.nodes(data=True)
            if data["kind"] == "layer" and data["spec"].sublayer_regularizers}


def _copyable(spec) -> bool:
    """An untouched original layer can be carried by copying its object if need be (not when
    a pass computed new weights for it: they may have other shapes than the original's)."""
    return (spec.untouched and spec.weights is None
            and isinstance(spec.source, keras.layers.Layer))


def _state_not_in_config(spec, layer, same_inputs, source_states) -> str | None:
    """Why `layer`, re-created from the config of `spec`'s untouched original, cannot hold the
    original's state (see `fidelity`), or None: sub-layers quantized or given LoRA adapters
    (a LoRA layer's saved kernel is merged with its adapter, so its variables must be copied
    as they are), other dtype policies or trainable flags."""
    if layer_copy.holds_lora(spec.source):
        return "it holds LoRA adapters, which Keras's save/load protocol merges into the kernel"
    if [(type(s), s.name) for s in _keras.sublayers(spec.source)] == [
            (type(s), s.name) for s in _keras.sublayers(layer)]:
        layer_copy.carry_trainable_flags(spec.source, layer)
    expected = source_states[id(spec)] = layer_state.layer_state(spec.source,
                                                                 shapes=same_inputs)
    why = fidelity.state_difference(expected,
                                    layer_state.layer_state(layer, shapes=same_inputs))
    return None if why is None else f"its config does not hold its whole state ({why})"


def _unfaithful(spec, layer, same_inputs) -> str | None:
    """Why `layer`, re-created from `spec`'s config and built, is not the original, or None.

    Variable shapes are compared only when the layer got inputs of the original's shapes
    (an upstream pass may legitimately change them).
    """
    expected = _keras.layer_structure(spec.source, shapes=same_inputs)
    received = _keras.layer_structure(layer, shapes=same_inputs)
    if expected != received:
        return (f"re-created from its config it builds other sub-layers or variables "
                f"({_first_difference(expected, received)})")
    try:
        config = layer.get_config()
    except Exception as exc:
        return f"get_config() fails after from_config ({type(exc).__name__}: {exc})"
    # spec.config: the original's, or with only the dtype policy a pass changed. Keras's
    # object-sharing scope (active while a file loads) stamps "shared_object_id" into configs
    # serialized again, in place: not a difference.
    config = _without_sharing_ids(config)
    wanted = _without_sharing_ids(spec.config if spec.config_error is None
                                  else spec.original_config)
    if not configs_equal(config, wanted):
        keys = sorted(k for k in set(config) | set(wanted)
                      if not configs_equal(config.get(k), wanted.get(k)))
        return f"its config does not round-trip (differs in {', '.join(keys[:5])})"
    return None


def _without_sharing_ids(value):
    if isinstance(value, dict):
        return {k: _without_sharing_ids(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_sharing_ids(v) for v in value)
    return value


def _changed_keys(spec) -> set:
    """The config keys a pass changed (shared-object ids aside)."""
    config, original = (_without_sharing_ids(c) for c in (spec.config, spec.original_config))
    return {k for k in set(config) | set(original)
            if not configs_equal(config.get(k), original.get(k))}


# The regularizers of the layers Keras quantizes or gives LoRA, and the variable of each.
_STATEFUL_REGULARIZED = {"kernel_regularizer": "kernel", "bias_regularizer": "bias",
                         "embeddings_regularizer": "embeddings"}


def _regularizers_only_change(spec) -> dict | None:
    """{config key: new value} when a pass changed only regularizers of a quantized or LoRA
    layer, else None. Re-created from its config such a layer would not be the same (a
    float8 Dense creates its variables in another order than `quantize` left them; LoRA
    draws new adapters): it is copied from the object, and the regularizers set on the copy."""
    source = spec.source
    if (not isinstance(source, keras.layers.Layer) or spec.subgraph is not None
            or spec.weights is not None or spec.cls is not type(source)
            or spec.original_config is None or spec.sublayer_regularizers
            or not (getattr(source, "quantization_mode", None)
                    or getattr(source, "lora_enabled", False))):
        return None
    changed = _changed_keys(spec)
    if not changed or not changed <= set(_STATEFUL_REGULARIZED):
        return None
    return {key: spec.config.get(key) for key in changed}


def _policy_only_change(spec) -> str | None:
    """The policy name when a pass changed nothing of an original layer but its ``dtype``
    config entry (`SetDtypePolicy`), else None. Such a layer, when its config cannot
    re-create it, is copied from the object with the new policy set on the copy."""
    if (spec.source is None or spec.subgraph is not None or spec.weights is not None
            or spec.cls is not type(spec.source) or spec.original_config is None
            or spec.sublayer_regularizers or "dtype" not in spec.config
            or not isinstance(spec.source, keras.layers.Layer)):
        return None
    if _changed_keys(spec) != {"dtype"}:
        return None
    try:
        return keras.dtype_policies.get(spec.config["dtype"]).name
    except Exception:
        return None


def _first_difference(expected, received) -> str:
    for i, (a, b) in enumerate(zip(expected, received)):
        if a != b:
            return f"sub-layer {i}: expected {a}, received {b}"
    return f"expected {len(expected)} sub-layers, received {len(received)}"


def _first_line(exc) -> str:
    return _keras_message(exc)[:200]


def _call_error(spec, exc, inputs):
    """RebuildError: the layer, the input shapes it received, from which layers, and what it
    took in the original model. `inputs` is ``[(producer id, shape, original shape or None)]``
    in slot order (see `_named_inputs`)."""
    return RebuildError(f"{checks.input_text(spec, inputs)} ({type(exc).__name__}: "
                        f"{_keras_message(exc)})")


def _keras_message(exc) -> str:
    """Keras's message without its frame ("Exception encountered when calling ...",
    "Arguments received by ...") and terminal colours: what went wrong, on one line."""
    lines = []
    for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines():
        if line.startswith("Arguments received by"):
            break
        if line.strip() and not line.startswith("Exception encountered when calling"):
            lines.append(line.strip())
    return " ".join(lines) or str(exc)


def _named_inputs(inputs, sources) -> list:
    """``[(producer id, shape received, shape in the original model or None)]`` per slot."""
    sources = sources or {}
    return [(sources.get(slot, (None, None))[0], tuple(inputs[slot].shape),
             sources.get(slot, (None, None))[1]) for slot in sorted(inputs)]


def _output_of(node_id, layer, recorded) -> list:
    """`_named_inputs` for the layer after `layer` (node `node_id`, whose original output
    shapes are `recorded`) in a Sequential chain."""
    try:
        outputs = keras.tree.flatten(layer.output)
    except Exception:  # an operation that cannot say: the error names less
        return []
    recorded = recorded or [None] * len(outputs)
    return [(node_id, tuple(t.shape), before) for t, before in zip(outputs, recorded)]


def _is_chain(graph) -> bool:
    """One input, one output, each call taking exactly the previous call's single output.

    (Keras records call-context kwargs such as training=False on a Sequential's own calls;
    Sequential passes those itself, so only the topology is checked.)
    """
    if len(graph.graph["inputs"]) != 1 or len(graph.graph["outputs"]) != 1:
        return False
    for node_id, data in graph.nodes(data=True):
        if data["kind"] in ("layer", "op"):
            if graph.in_degree(node_id) != 1:
                return False
        if data["kind"] != "output" and graph.out_degree(node_id) != 1:
            return False
    return True
