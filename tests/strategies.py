"""Hypothesis strategies: random small, valid CNN graphs, and the profiles that size the runs.

`model_specs()` draws a `ModelSpec`: a plain description of a model (inputs, layer calls in
order, outputs), with every construction decision drawn from hypothesis so that shrinking
works on the structure itself. `build(spec)` turns it into a Keras model with deterministic
weights. A failing example prints as a code-like listing (`ModelSpec.__repr__`) that reads
almost as the Keras code of a regression test.

What the models contain (tiny shapes, so one builds in a few tens of milliseconds):

- one or two inputs: an 8x8x2/3 image, and optionally a second image or a vector;
- a Conv2D stem, then blocks: Conv2D or Dense anchors (Dense also on feature maps; fused
  activations and frozen layers sometimes) followed by runs, in random order, of
  BatchNormalization (sometimes scale=False, axis=1, or called with training=False),
  activations (Activation relu/tanh/sigmoid/linear/swish, ReLU, ReLU(max_value=6),
  LeakyReLU, ELU, PReLU, Softmax), Max/AveragePooling2D, Dropout (sometimes with a
  whole-channel or a drop-connect noise_shape) and SpatialDropout2D; residual adds (the Add
  layer or the raw op ``keras.ops.add``); concatenated branches (two runs from one conv, the
  same tensor twice); a nested sub-model (Functional or Sequential, sometimes frozen or
  called with training=False) used as a layer; a layer or a nested model called twice
  (sometimes with a name a graph node id could clash with); flatten / global pooling to
  vectors and dense layers;
- one or two outputs (a list or a dict), the second tapped from an intermediate tensor,
  maybe the same tensor as the first;
- a single-input, single-output chain is sometimes a Sequential model.

Weights are set from numpy generators seeded by (spec.seed, layer name): BatchNormalization
gets random gamma / beta / moving statistics, with some negative gammas where the spec says
so, and PReLU alphas of either sign, so that the reorder pass's "outputs unchanged" verdicts
go both ways.
"""
from __future__ import annotations

import dataclasses
import os
import zlib

import keras
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from keras import layers

# ------------------------------------------------------------------------------ profiles

settings.register_profile(
    "ci", max_examples=15, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example])
settings.register_profile(
    "thorough", max_examples=200, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example])


def profile() -> settings:
    """The profile named by $HYPOTHESIS_PROFILE ("ci" when unset); not loaded globally."""
    return settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ------------------------------------------------------------------------------ the spec

# Category of each class a run can hold, written out here independently of the pass.
CATEGORY = {
    "BatchNormalization": "bn",
    "Activation": "act", "ReLU": "act", "LeakyReLU": "act", "ELU": "act", "PReLU": "act",
    "Softmax": "act",
    "MaxPooling2D": "pool", "AveragePooling2D": "pool",
    "Dropout": "drop", "SpatialDropout2D": "drop",
}
ANCHORS = ("Conv2D", "Dense")
CATEGORIES = ("bn", "act", "pool", "drop")


@dataclasses.dataclass(frozen=True)
class Call:
    """``out = layer(*inputs)``. `config` is None for a further call of a layer made earlier."""

    out: str
    layer: str  # layer name (unique in the whole spec, nested models included)
    cls: str  # a keras.layers class name, "ops.add", or "Model" (then `sub` is set)
    config: tuple | None  # sorted (key, value) pairs for the constructor
    inputs: tuple  # tensor names; several for Add / Concatenate / ops.add
    sub: "ModelSpec | None" = None
    negative_gamma: bool = False  # BatchNormalization: give some channels gamma < 0
    kwargs: tuple = ()  # call keyword arguments, e.g. (("training", False),)

    def line(self, indent: str) -> str:
        args = ", ".join(self.inputs)
        args = f"[{args}]" if len(self.inputs) > 1 else args
        args += "".join(f", {k}={v!r}" for k, v in self.kwargs)
        if self.cls == "ops.add":
            return f"{indent}{self.out} = keras.ops.add({', '.join(self.inputs)})"
        if self.sub is not None:
            head = f"{indent}{self.out} = {self.layer}({args})  # nested model:"
            return head + "\n" + self.sub.listing(indent + "    ", top=False)
        if self.config is None:
            return f"{indent}{self.out} = {self.layer}({args})  # a further call of {self.layer}"
        kwargs = "".join(f", {k}={v!r}" for k, v in self.config)
        note = "  # some gamma < 0" if self.negative_gamma else ""
        return f"{indent}{self.out} = {self.cls}(name={self.layer!r}{kwargs})({args}){note}"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    inputs: tuple  # ((tensor name, shape), ...)
    calls: tuple  # Call, in call order
    outputs: tuple  # tensor names
    sequential: bool = False
    trainable: bool = True
    seed: int = 0  # weight seed (top level only)
    shapes: tuple = dataclasses.field(default=(), compare=False)  # ((tensor, shape), ...)
    dict_outputs: bool = False  # outputs {"out0": ..., "out1": ...} instead of a list

    def listing(self, indent: str = "", top: bool = True) -> str:
        kind = "Sequential" if self.sequential else "Functional"
        frozen = ", trainable=False" if not self.trainable else ""
        seed = f", weight seed {self.seed}" if top else ""
        lines = [f"{indent}# {kind} {self.name!r}{frozen}{seed}"]
        lines += [f"{indent}{n} = Input({s})" for n, s in self.inputs]
        lines += [c.line(indent) for c in self.calls]
        if self.dict_outputs:
            lines.append(f"{indent}outputs = {{" + ", ".join(
                f"'out{i}': {o}" for i, o in enumerate(self.outputs)) + "}")
        else:
            lines.append(f"{indent}outputs = [{', '.join(self.outputs)}]")
        return "\n".join(lines)

    def __repr__(self):
        return "ModelSpec:\n" + self.listing("    ")

    def _repr_pretty_(self, printer, cycle):  # how hypothesis prints a falsifying example
        printer.text(repr(self))

    def all_calls(self):
        """Every call, nested models' included (depth first)."""
        for c in self.calls:
            yield c
            if c.sub is not None:
                yield from c.sub.all_calls()


# ------------------------------------------------------------------------------ drawing


# Block kinds, simplest first (hypothesis shrinks towards the first); conv_block twice and
# to_vector once, so that most models keep feature maps (and pooling) for a while.
BLOCK_KINDS = ("conv_block", "residual", "branches", "nested", "shared", "conv_block",
               "to_vector")
# Simplest first. Non-decreasing ones (they commute with max pooling) and others.
ACTIVATIONS = (
    ("ReLU", ()), ("Activation", (("activation", "relu"),)),
    ("Activation", (("activation", "tanh"),)), ("Activation", (("activation", "sigmoid"),)),
    ("LeakyReLU", (("negative_slope", 0.2),)), ("Activation", (("activation", "linear"),)),
    ("ReLU", (("max_value", 6.0),)), ("ELU", ()), ("Activation", (("activation", "swish"),)),
    ("Softmax", ()), ("PReLU", ()),
)
CHAIN_KINDS = ("conv_block", "nested", "conv_block", "to_vector")  # for Sequential models


class _Gen:
    """Draws one model's calls; tracks each tensor's shape (batch excluded)."""

    def __init__(self, draw, names, prefix=""):
        self.draw = draw
        self.names = names  # [counter, special names used]: unique across nested models
        self.calls = []
        self.shape = {}
        self.tensors = 0
        self.prefix = prefix

    def fresh_layer(self, stem):
        self.names[0] += 1
        return f"{stem}{self.names[0]}"

    def new_tensor(self, shape):
        self.tensors += 1
        name = f"{self.prefix}t{self.tensors}"
        self.shape[name] = tuple(shape)
        return name

    def add(self, cls, stem, inputs, shape, config=(), name=None, **extra):
        name = name or self.fresh_layer(stem)
        out = self.new_tensor(shape)
        self.calls.append(Call(out, name, cls, tuple(sorted(config)), tuple(inputs), **extra))
        return out

    def again(self, call: Call, x):
        """Call the layer (or nested model) of `call` once more, on `x` (same input shape)."""
        out = self.new_tensor(self.shape[call.out])
        self.calls.append(Call(out, call.layer, call.cls, None, (x,), kwargs=self.kwargs()))
        return out

    def kwargs(self):
        """Sometimes training=False, as when fine-tuning on a frozen base."""
        return (("training", False),) if self.flag(6) else ()

    def flag(self, one_in):
        """True with probability about 1/one_in; shrinks to False."""
        return self.draw(st.integers(0, one_in - 1)) == one_in - 1

    # -------------------------------------------------------------- layers

    def anchor(self, x, units=None, allow_frozen=True, name=None):
        shape = self.shape[x]
        units = units or self.draw(st.sampled_from([2, 3, 4]))
        config = [("activation", self.draw(st.sampled_from(["linear", "relu", "tanh"])))]
        if allow_frozen and self.flag(8):
            config.append(("trainable", False))
        image = len(shape) == 3
        if image and self.draw(st.sampled_from(["Conv2D", "Conv2D", "Dense"])) == "Conv2D":
            config += [("filters", units), ("kernel_size", self.draw(st.sampled_from([3, 1]))),
                       ("padding", "same")]
            return self.add("Conv2D", "conv", [x], shape[:-1] + (units,), config, name)
        config.append(("units", units))  # Dense on a feature map acts on the channel axis
        return self.add("Dense", "dense", [x], shape[:-1] + (units,), config, name)

    def run_layer(self, x, allow_pool=True):
        shape = self.shape[x]
        image = len(shape) == 3
        categories = ["act", "bn", "drop"]
        if image and allow_pool and shape[0] >= 2:
            # BatchNormalization and pooling twice as often: BN across max pooling is where
            # the reorder verdict depends on the weights (the sign of gamma).
            categories += ["pool", "bn", "pool"]
        category = self.draw(st.sampled_from(categories))
        if category == "bn":
            config = []
            if self.flag(6):
                config.append(("scale", False))
            if image and self.flag(10):
                config.append(("axis", 1))  # normalizes rows: may not cross pooling
            negative = self.draw(st.booleans()) and dict(config).get("scale", True)
            return self.add("BatchNormalization", "bn", [x], shape, config,
                            negative_gamma=negative, kwargs=self.kwargs())
        if category == "act":
            cls, config = self.draw(st.sampled_from(ACTIVATIONS))
            if cls == "PReLU" and image and self.draw(st.booleans()):
                config = (("shared_axes", (1, 2)),)  # one alpha per channel
            return self.add(cls, "act", [x], shape, config)
        if category == "pool":
            cls = self.draw(st.sampled_from(["MaxPooling2D", "AveragePooling2D"]))
            return self.add(cls, "pool", [x], (shape[0] // 2, shape[1] // 2, shape[2]),
                            [("pool_size", 2)])
        cls = self.draw(st.sampled_from(["Dropout", "SpatialDropout2D"] if image
                                        else ["Dropout"]))
        config = [("rate", 0.25), ("seed", 1)]
        if cls == "Dropout" and image and self.flag(6):
            # whole channels (the SpatialDropout pass converts it) or drop-connect (it does not)
            config.append(("noise_shape", self.draw(st.sampled_from(
                [(None, 1, 1, shape[-1]), (None, 1, 1, 1)]))))
        return self.add(cls, "drop", [x], shape, config)

    def run(self, x, allow_pool=True, max_size=4):
        for _ in range(self.draw(st.integers(0, max_size))):
            x = self.run_layer(x, allow_pool)
        return x

    def conv_block(self, x, units=None, allow_pool=True):
        return self.run(self.anchor(x, units), allow_pool)

    def merge_add(self, a, b):
        if self.draw(st.booleans()):
            return self.add("ops.add", "add", [a, b], self.shape[a])
        return self.add("Add", "add", [a, b], self.shape[a])

    # -------------------------------------------------------------- blocks

    def block(self, x, kinds=BLOCK_KINDS):
        return getattr(self, self.draw(st.sampled_from(kinds)))(x)

    def residual(self, x):
        channels = self.shape[x][-1]
        y = x
        for _ in range(self.draw(st.integers(1, 2))):
            y = self.conv_block(y, units=channels, allow_pool=False)
        out = self.merge_add(x, y)
        return self.run(out, allow_pool=True, max_size=2)

    def branches(self, x):
        """Concatenate two branches (each a conv block or just a run), maybe x itself too,
        maybe one tensor twice."""
        parts = []
        for _ in range(2):
            if self.draw(st.integers(0, 2)) < 2:
                parts.append(self.conv_block(x, allow_pool=False))
            else:  # two runs from one anchor when x is a conv's output
                parts.append(self.run(x, allow_pool=False, max_size=2))
        if self.draw(st.booleans()):
            parts.insert(0, x)
        if self.flag(5):
            parts.append(parts[-1])
        channels = sum(self.shape[p][-1] for p in parts)
        return self.add("Concatenate", "concat", parts, self.shape[x][:-1] + (channels,),
                        [("axis", -1)])

    def nested(self, x, keep_shape=False):
        name = self.fresh_layer("sub")
        inner = _Gen(self.draw, self.names, prefix=f"{name}_")
        inp = inner.new_tensor(self.shape[x])
        y = inp
        for _ in range(self.draw(st.integers(1, 2))):
            if keep_shape:
                y = inner.conv_block(y, units=self.shape[x][-1], allow_pool=False)
            else:
                y = inner.conv_block(y)
        sequential = all(not c.kwargs for c in inner.calls) and self.draw(st.booleans())
        trainable = not self.flag(5)
        sub = ModelSpec(name, ((inp, self.shape[x]),), tuple(inner.calls), (y,), sequential,
                        trainable, shapes=tuple(inner.shape.items()))
        out = self.new_tensor(inner.shape[y])
        self.calls.append(Call(out, name, "Model", None, (x,), sub=sub, kwargs=self.kwargs()))
        return out

    def shared(self, x):
        """A layer (or nested model) called twice: on x, then on its own processed output.

        Its name is sometimes one a graph node id could clash with: "output" (whose second
        call is node "output:1", like a model's second output), or plain but followed by a
        layer named "<name>:1" (like the node id of its own second call).
        """
        shape = self.shape[x]
        kind = self.draw(st.sampled_from(["anchor", "bn", "drop", "nested"]))
        naming = self.draw(st.sampled_from(["plain", "output", "decoy"]))
        name = None
        if naming == "output" and kind != "nested" and "output" not in self.names:
            name = "output"
            self.names.append(name)  # once per spec: layer names must stay unique
        if kind == "anchor":
            first = self.anchor(x, units=shape[-1], allow_frozen=False, name=name)
        elif kind == "nested":
            first = self.nested(x, keep_shape=True)
        elif kind == "bn":
            first = self.add("BatchNormalization", "bn", [x], shape, name=name,
                             negative_gamma=self.draw(st.booleans()))
        else:
            first = self.add("Dropout", "drop", [x], shape, [("rate", 0.25), ("seed", 1)],
                             name=name)
        call = self.calls[-1]
        if naming == "decoy":
            first = self.add("ReLU", "act", [first], shape, name=f"{call.layer}:1")
        mid = self.run(first, allow_pool=False, max_size=2)
        second = self.again(call, mid)
        if self.draw(st.booleans()):
            second = self.merge_add(first, second)
        return second

    def to_vector(self, x):
        if len(self.shape[x]) == 1:
            return self.conv_block(x)
        cls = self.draw(st.sampled_from(["GlobalAveragePooling2D", "Flatten",
                                         "GlobalMaxPooling2D"]))
        h, w, c = self.shape[x]
        shape = (h * w * c,) if cls == "Flatten" else (c,)
        return self.add(cls, "flat", [x], shape)

    def head(self, x):
        """An output: the tensor itself, or (vector) -> Dense(2), maybe with a run between."""
        if self.draw(st.booleans()):
            return x
        if len(self.shape[x]) == 3:
            x = self.to_vector(x)
        x = self.run(self.anchor(x), allow_pool=False, max_size=2)
        return x

    def merge_second_input(self, x, x2):
        if len(self.shape[x2]) == 3 and self.draw(st.booleans()):
            x2 = self.conv_block(x2, allow_pool=False)
        if self.shape[x2][:-1] != self.shape[x][:-1]:
            if len(self.shape[x]) == 3:
                x = self.to_vector(x)
            if len(self.shape[x2]) == 3:
                x2 = self.to_vector(x2)
        channels = self.shape[x][-1] + self.shape[x2][-1]
        return self.add("Concatenate", "concat", [x, x2], self.shape[x][:-1] + (channels,),
                        [("axis", -1)])


def _is_chain(spec: ModelSpec) -> bool:
    previous = spec.inputs[0][0]
    for c in spec.calls:
        if (c.config is None and c.sub is None or c.cls == "ops.add" or c.kwargs
                or c.inputs != (previous,)):
            return False
        previous = c.out
    return len(spec.inputs) == 1 and spec.outputs == (previous,)


@st.composite
def model_specs(draw, max_blocks=4):
    """A random small valid model, as a `ModelSpec` (build it with `build`)."""
    seed = draw(st.integers(0, 2**16 - 1))
    chain = draw(st.integers(0, 4)) == 4  # one input, one output, chain blocks only
    gen = _Gen(draw, [0])
    x = gen.new_tensor((8, 8, draw(st.sampled_from([2, 3]))))
    inputs = [x]
    if not chain and draw(st.booleans()):
        inputs.append(gen.new_tensor(draw(st.sampled_from([(8, 8, 2), (4, 4, 3), (5,)]))))
    input_specs = tuple((t, gen.shape[t]) for t in inputs)
    x = gen.conv_block(x)  # a stem, as in most CNNs
    taps = [x]
    for _ in range(draw(st.integers(0, max_blocks - 1))):
        x = gen.block(x, CHAIN_KINDS if chain else BLOCK_KINDS)
        taps.append(x)
    if len(inputs) == 2:
        x = gen.merge_second_input(x, inputs[1])
    outputs = [gen.head(x)]
    if not chain and draw(st.booleans()):
        outputs.append(gen.head(draw(st.sampled_from(taps))))  # maybe the same tensor twice
    as_dict = len(outputs) > 1 and draw(st.booleans())
    spec = ModelSpec("generated", input_specs, tuple(gen.calls), tuple(outputs), seed=seed,
                     shapes=tuple(gen.shape.items()), dict_outputs=as_dict)
    if _is_chain(spec) and draw(st.booleans()):
        spec = dataclasses.replace(spec, sequential=True)
    return spec


def orders():
    """A ReorderBlocks order: the default, a permutation of all four, or of some of them."""
    return st.one_of(st.just(CATEGORIES), st.permutations(CATEGORIES),
                     st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=4,
                              unique=True).map(tuple))


# ------------------------------------------------------------------------------ building


def _new_layer(call: Call):
    if call.cls == "ops.add":
        return lambda *tensors: keras.ops.add(*tensors)
    return getattr(layers, call.cls)(name=call.layer, **dict(call.config))


def _build(spec: ModelSpec, made: dict):
    if spec.sequential:
        ((_, shape),) = spec.inputs
        chain = [build_layer(c, made) for c in spec.calls]
        model = keras.Sequential([keras.Input(shape), *chain], name=spec.name)
    else:
        tensors = {n: keras.Input(s, name=n) for n, s in spec.inputs}
        for c in spec.calls:
            layer = build_layer(c, made)
            args = [tensors[t] for t in c.inputs]
            if c.cls == "ops.add":
                tensors[c.out] = layer(*args)
            else:
                tensors[c.out] = layer(args if len(args) > 1 else args[0], **dict(c.kwargs))
            _check_shape(spec, c.out, tensors[c.out])
        ins = [tensors[n] for n, _ in spec.inputs]
        outs = [tensors[n] for n in spec.outputs]
        if spec.dict_outputs:
            outs = {f"out{i}": o for i, o in enumerate(outs)}
        elif len(outs) == 1:
            outs = outs[0]
        model = keras.Model(ins if len(ins) > 1 else ins[0], outs, name=spec.name)
    if not spec.trainable:
        model.trainable = False
    return model


def _check_shape(spec, name, tensor):
    """The generator's own shape bookkeeping must agree with Keras (a self-check)."""
    expected = dict(spec.shapes)[name]
    if tuple(tensor.shape[1:]) != expected:
        raise AssertionError(f"strategy bug: {name} has shape {tuple(tensor.shape[1:])}, "
                             f"the spec says {expected}")


def build_layer(call: Call, made: dict):
    if call.layer not in made:
        made[call.layer] = _build(call.sub, made) if call.sub is not None else _new_layer(call)
    return made[call.layer]


def build(spec: ModelSpec) -> keras.Model:
    """The Keras model of `spec`, with deterministic, non-trivial weights."""
    model = _build(spec, {})
    negative = {c.layer for c in spec.all_calls() if c.negative_gamma}
    set_weights(model, spec.seed, negative)
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def set_weights(model, seed, negative_gamma=()):
    """Weights from a generator seeded by (seed, layer name): kernels ~ N(0, 1/fan_in),
    biases ~ N(0, 0.1²), PReLU alpha in [-0.05, 0.3]; BatchNormalization gamma in
    ±[0.5, 1.5] (some channels negative for the layers in `negative_gamma`), beta and moving
    mean ~ N(0, 0.5²), moving variance in [0.25, 2]."""
    for layer in _all_layers(model):
        if isinstance(layer, keras.Model) or not layer.weights:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(layer.name.encode())])
        for w in layer.weights:
            shape = tuple(w.shape)
            name = w.name
            if name == "kernel":
                value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
            elif name == "gamma":
                value = rng.uniform(0.5, 1.5, shape)
                if layer.name in negative_gamma:
                    flip = rng.random(shape) < 0.5
                    flip[rng.integers(shape[0])] = True
                    value = np.where(flip, -value, value)
            elif name == "alpha":  # PReLU: mostly >= 0, sometimes not (max pooling proof)
                value = rng.uniform(-0.05, 0.3, shape)
            elif name == "moving_variance":
                value = rng.uniform(0.25, 2.0, shape)
            elif name in ("beta", "moving_mean"):
                value = rng.normal(0.0, 0.5, shape)
            else:
                value = rng.normal(0.0, 0.1, shape)
            w.assign(value.astype(w.dtype))


# ------------------------------------------------------------------------------ facts a test
# reads off the spec (not off the library)


def kernel_layers(spec: ModelSpec) -> list[str]:
    """Names of the Conv2D and Dense layers (each once, nested models included)."""
    return [c.layer for c in spec.all_calls() if c.cls in ANCHORS and c.config is not None]


def dropouts(spec: ModelSpec) -> dict:
    """Plain Dropout layer name -> (set of input shapes over its calls, noise_shape)."""
    found = {}
    _dropouts(spec, found)
    return found


def _dropouts(spec: ModelSpec, found: dict) -> None:
    shapes = dict(spec.shapes)
    for c in spec.calls:
        if c.sub is not None:
            _dropouts(c.sub, found)
        elif c.cls == "Dropout":
            if c.config is not None:
                found[c.layer] = (set(), dict(c.config).get("noise_shape"))
            found[c.layer][0].add(shapes[c.inputs[0]])
