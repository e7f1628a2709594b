"""Prove that one model is another: what a rewrite changed, not only its predictions.

A written file can predict exactly like the rewritten model and still not hold the rewrite:
regularizers only act in training, so a file that reloads without them predicts the same. That
happens with classes that rebuild themselves from constructor arguments on load (KerasHub
backbones: ``Backbone.from_config`` is ``cls(**config)``) and with custom layers whose
sublayers' settings are not in their ``get_config``. So `compare_models` checks, layer by layer
and sublayer by sublayer (at any depth):

- the same layers, classes and order, by name;
- every regularizer: the ``*_regularizer`` entries of each (sub)layer's config and the
  regularizer attached to each variable (``variable.regularizer``, which is what Keras computes
  the loss from), with its factor;
- dtype policies, activations, lookup vocabularies;
- the number of weights, their shapes, and their values bit for bit (compared by a SHA-256
  hash, so a large model is never held twice);
- predictions on a given batch, reusing outputs already computed for the expected model.

    >>> import keras
    >>> inputs = keras.Input((3,), name="x")
    >>> a = keras.Model(inputs, keras.layers.Dense(2, kernel_regularizer="l2", name="d")(inputs))
    >>> b = keras.models.clone_model(a)
    >>> b.get_layer("d").kernel_regularizer = None
    >>> b.set_weights(a.get_weights())
    >>> print(compare_models(a, b).differences[0])
    layer 'd': kernel_regularizer expected L2(0.01), received None

The predictions are compared by `keras_rewrite.verify.predictions`.

Keras itself is imported inside the functions that need it, so importing this module is cheap.
"""
from __future__ import annotations

import dataclasses
import hashlib

from keras_rewrite.errors import RewriteError
from keras_rewrite.verify import predictions
from keras_rewrite.verify.walk import _children, _walk

__all__ = ["Difference", "Comparison", "ModelMismatchError", "LayerSummary", "ModelSummary",
           "summarize", "compare_models", "check_same_model", "format_regularizer"]


class ModelMismatchError(RewriteError, ValueError):
    """Two models that should be the same are not (e.g. a written file and the model written).

    Attributes:
        differences: every `Difference` found, the first one in the message.
        max_abs_difference: the largest absolute difference of the predictions, or None when
            predictions were not compared.
    """

    def __init__(self, message, differences=(), max_abs_difference=None):
        super().__init__(message)
        self.differences = list(differences)
        self.max_abs_difference = max_abs_difference


@dataclasses.dataclass(frozen=True)
class Difference:
    """One way the received model differs from the expected one.

    Attributes:
        layer: the (sub)layer's path of names, such as ``"block/query"``; the model's own name
            for the model itself.
        what: what differs (``"kernel_regularizer"``, ``"class"``, ``"weight 'kernel'"``, ...).
        expected: the expected value, as text.
        received: the received value, as text.
        kind: ``"layers"`` (missing, extra, reordered, another class), ``"config"``,
            ``"weights"`` or ``"predictions"``.
    """

    layer: str
    what: str
    expected: str
    received: str
    kind: str = "config"

    def __str__(self):
        where = f"layer {self.layer!r}: " if self.layer else ""
        what = f"{self.what} " if self.what else ""
        return f"{where}{what}expected {self.expected}, received {self.received}"


@dataclasses.dataclass
class Comparison:
    """What `compare_models` found. True when the models are the same.

    Attributes:
        differences: every difference, structure first, then configs, weights, predictions.
        max_abs_difference: largest absolute difference of the predictions (None: not compared).
        layers_compared: how many layers and sublayers were compared.
    """

    differences: list
    max_abs_difference: float | None = None
    layers_compared: int = 0

    def __bool__(self):
        return not self.differences

    def message(self, prefix: str = "the models differ") -> str:
        """One line: `prefix`, the first difference, and how many more there are."""
        first, more = self.differences[0], len(self.differences) - 1
        tail = f" (and {more} more difference{'s' if more != 1 else ''})" if more else ""
        return f"{prefix}: {first}{tail}"

    def raise_if_different(self, prefix: str = "the models differ") -> None:
        """Raise `ModelMismatchError` with `message(prefix)` unless the models are the same."""
        if self.differences:
            raise ModelMismatchError(self.message(prefix), self.differences,
                                     self.max_abs_difference)


# --------------------------------------------------------------------------- summaries


@dataclasses.dataclass
class LayerSummary:
    """What is compared of one layer or sublayer (values as short text, weights as hashes)."""

    name: str
    path: str  # its names from the model down, for messages
    class_name: str
    regularizers: dict  # config key -> text, e.g. {"kernel_regularizer": "L2(0.0001)"}
    dtype_policy: str | None
    activation: str | None
    vocabulary: str | None  # hash of a lookup layer's vocabulary
    # Its own variables, in creation order: (name, shape, dtype, sha256 hex digest, regularizer).
    weights: list
    children: list = dataclasses.field(default_factory=list)  # indexes in ModelSummary.layers


@dataclasses.dataclass
class ModelSummary:
    """Every layer and sublayer of a model, in order (see `summarize`)."""

    name: str
    layers: list  # LayerSummary, parents before their sublayers

    @property
    def num_weights(self) -> int:
        return sum(len(layer.weights) for layer in self.layers)


def summarize(model) -> ModelSummary:
    """Walk `model` and every sublayer at any depth and record what `compare_models` checks.

    A summary holds hashes, not weights: keep one of a large model to compare later without
    holding its weights twice.
    """
    layers, index = [], {}
    for path, layer, parent in _walk(model):
        index[id(layer)] = len(layers)
        layers.append(_summarize_layer(path, layer))
        if parent is not None:
            layers[index[id(parent)]].children.append(len(layers) - 1)
    return ModelSummary(model.name, layers)


def _summarize_layer(path, layer) -> LayerSummary:
    import keras

    config = None
    if not isinstance(layer, keras.Model):  # a model's config is its layers', compared one by one
        try:
            config = layer.get_config()
        except Exception:  # e.g. KerasHub's RMSNormalization after loading: read attributes
            config = None
    if isinstance(config, dict):
        regularizers = {k: format_regularizer(v) for k, v in sorted(config.items())
                        if k.endswith("_regularizer")}
        activation = _activation_name(config["activation"]) if "activation" in config else None
    else:
        regularizers = {k: format_regularizer(v) for k, v in sorted(vars(layer).items())
                        if k.endswith("_regularizer") and not k.startswith("_")}
        activation = (_activation_name(layer.activation) if hasattr(layer, "activation")
                      else None)
    policy = getattr(layer, "dtype_policy", None)
    weights = [(variable.name,) + _fingerprint(variable)
               + (format_regularizer(getattr(variable, "regularizer", None)),)
               for variable in _own_variables(layer)]
    return LayerSummary(
        name=layer.name,
        path=path or layer.name,
        class_name=f"{type(layer).__module__}.{type(layer).__qualname__}",
        regularizers=regularizers,
        dtype_policy=getattr(policy, "name", None) if policy is not None else None,
        activation=activation,
        vocabulary=_vocabulary_hash(layer),
        weights=weights,
    )


def _own_variables(layer) -> list:
    """The layer's variables that none of its sublayers holds, in `layer.weights` order."""
    children = _children(layer)
    if not children:
        return list(layer.weights)
    theirs = {id(v) for child in children for v in child.weights}
    return [v for v in layer.weights if id(v) not in theirs]


def _fingerprint(variable) -> tuple:
    import keras
    import numpy as np

    value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
    digest = hashlib.sha256()
    if value.dtype.hasobject:  # no raw bytes to hash
        digest.update(repr(value.tolist()).encode())
    else:
        digest.update(memoryview(value).cast("B") if value.size else b"")
    return tuple(value.shape), str(value.dtype), digest.hexdigest()


def _vocabulary_hash(layer):
    get_vocabulary = getattr(layer, "get_vocabulary", None)
    if not callable(get_vocabulary):
        return None
    try:
        vocabulary = get_vocabulary()
    except Exception as exc:  # e.g. a lookup table that was never initialized
        return f"unreadable ({type(exc).__name__})"
    words = [w.decode() if isinstance(w, bytes) else str(w) for w in vocabulary]
    digest = hashlib.sha256("\n".join(words).encode()).hexdigest()[:12]
    return f"{len(words)} entries, sha256 {digest}"


def format_regularizer(value) -> str:
    """A regularizer (object, serialized dict, string or None) as short text.

    >>> format_regularizer({"class_name": "L2", "config": {"l2": 1e-4}})
    'L2(0.0001)'
    >>> format_regularizer({"class_name": "L1L2", "config": {"l1": 0.0, "l2": 1e-4}})
    'L1L2(l1=0.0, l2=0.0001)'
    >>> format_regularizer(None)
    'None'
    """
    if value is None:
        return "None"
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        import keras

        try:
            value = keras.regularizers.serialize(value)
        except Exception:
            return type(value).__name__
        if not isinstance(value, dict):
            return str(value)
    class_name = value.get("class_name", "?")
    config = value.get("config")
    if not isinstance(config, dict):
        return f"{class_name}({config!r})" if config is not None else class_name
    if len(config) == 1:
        return f"{class_name}({next(iter(config.values()))!r})"
    return f"{class_name}({', '.join(f'{k}={v!r}' for k, v in sorted(config.items()))})"


def _activation_name(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):  # a serialized function or layer
        config = value.get("config")
        return config if isinstance(config, str) else value.get("class_name", repr(value))
    return getattr(value, "__name__", type(value).__name__)


# --------------------------------------------------------------------------- comparing


def compare_models(expected, received, x=None, expected_outputs=None, *,
                   tolerance: float = 0.0) -> Comparison:
    """Every difference between `expected` and `received`, which should be the same model.

    Args:
        expected: the reference: a `keras.Model` or its `summarize` result.
        received: the model to check (e.g. reloaded from the written file).
        x: a batch to compare predictions on (None: predictions are not compared).
        expected_outputs: `predict(expected, x)` if already computed (it is then not
            recomputed; required when `expected` is a summary and `x` is given).
        tolerance: the largest absolute prediction difference accepted (0: bit-identical).

    Returns:
        A `Comparison`, true when nothing differs; its `differences` name the layer, what
        differs, and the expected and received values.

    Raises:
        ValueError: `x` is given with a summary as `expected` but no `expected_outputs`.
    """
    want = expected if isinstance(expected, ModelSummary) else summarize(expected)
    got = received if isinstance(received, ModelSummary) else summarize(received)
    differences = _compare_layers(want, got)
    largest = None
    if x is not None:
        if expected_outputs is None:
            if isinstance(expected, ModelSummary):
                raise ValueError("expected_outputs is required when `expected` is a summary; "
                                 "received expected_outputs=None")
            expected_outputs = predictions.predict(expected, x)
        largest = predictions.max_abs_difference(expected_outputs,
                                                 predictions.predict(received, x))
        if largest > tolerance:
            differences.append(Difference(
                "", "predictions: largest absolute difference on the batch",
                f"{tolerance:g}" if tolerance else "0", f"{largest:.3g}", kind="predictions"))
    return Comparison(differences, largest, len(got.layers))


def check_same_model(expected, received, x=None, expected_outputs=None, *,
                     prefix: str = "the models differ", tolerance: float = 0.0) -> Comparison:
    """`compare_models`, raising `ModelMismatchError` (one line: `prefix`: first difference)
    when anything differs.

    >>> import keras
    >>> inputs = keras.Input((3,), name="x")
    >>> a = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    >>> b = keras.models.clone_model(a)
    >>> check_same_model(a, b, prefix="the copy is not the model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_rewrite.verify.same_model.ModelMismatchError: the copy is not the model: layer 'd': weight ...
    """
    comparison = compare_models(expected, received, x, expected_outputs, tolerance=tolerance)
    comparison.raise_if_different(prefix)
    return comparison


def _compare_layers(want: ModelSummary, got: ModelSummary) -> list:
    """Pair the two trees of layers from the models down, then compare each pair."""
    structure, pairs = [], []
    _pair(want, got, want.layers[0], got.layers[0], structure, pairs)
    configs, weights = [], []
    for a, b in pairs:
        configs.extend(_compare_layer(a, b))
        weights.extend(_compare_weights(a, b))
    if want.num_weights != got.num_weights:
        weights.append(Difference("", "number of weights", str(want.num_weights),
                                  str(got.num_weights), kind="weights"))
    return structure + configs + weights


def _pair(want, got, a, b, differences, pairs) -> None:
    """Pair `a` with `b`, then their sublayers: by name first (a model file keeps the names of
    a model's layers), then the rest by position when the classes agree, since sublayers
    created without a name get a new automatic one (``dense_7``, ``input_layer_3``) each time
    their parent is built, also when a file is loaded."""
    pairs.append((a, b))
    mine = [want.layers[i] for i in a.children]
    theirs = [got.layers[i] for i in b.children]
    by_name = {}
    for layer in theirs:
        by_name.setdefault(layer.name, layer)
    named = [(x, by_name.pop(x.name)) for x in mine if x.name in by_name]
    taken = {id(y) for _, y in named}
    # InputLayers are ordered among themselves only: a model built by a constructor (a
    # KerasHub backbone, also when loaded) tracks its inputs after its other layers, a
    # Functional built from tensors tracks them first, and both compute the same thing.
    # Where the order differs, it is named with the inputs first on both sides.
    mine_named = [x for x, _ in named]
    theirs_named = [y for y in theirs if id(y) in taken]
    order_mine = [x.name for x in sorted(mine_named, key=lambda x: not _is_input(x))]
    order_theirs = [y.name for y in sorted(theirs_named, key=lambda y: not _is_input(y))]
    if order_mine != order_theirs:
        differences.append(_first_moved(order_mine, order_theirs, a.path if a is not
                                        want.layers[0] else ""))
    matched = {id(x) for x, _ in named}
    rest_mine = [x for x in mine if id(x) not in matched]
    rest_theirs = [y for y in theirs if id(y) not in taken]
    for x, y in zip(rest_mine, rest_theirs):
        if x.class_name == y.class_name:
            named.append((x, y))
        else:
            differences.append(Difference(x.path, "", f"{_a(_short(x.class_name))} of this "
                                          "name", "no such layer", kind="layers"))
            differences.append(Difference(y.path, "", "no such layer",
                                          _a(_short(y.class_name)), kind="layers"))
    n = min(len(rest_mine), len(rest_theirs))
    for x in rest_mine[n:]:
        differences.append(Difference(x.path, "", f"{_a(_short(x.class_name))} of this name",
                                      "no such layer", kind="layers"))
    for y in rest_theirs[n:]:
        differences.append(Difference(y.path, "", "no such layer", _a(_short(y.class_name)),
                                      kind="layers"))
    for x, y in named:
        _pair(want, got, x, y, differences, pairs)


def _is_input(layer) -> bool:
    return _short(layer.class_name) == "InputLayer"


def _first_moved(want: list, got: list, parent: str) -> Difference:
    prefix = f"{parent}/" if parent else ""
    for i, (a, b) in enumerate(zip(want, got)):
        if a != b:
            j = got.index(a)
            return Difference(prefix + a, "position", _position(want, i, prefix),
                              _position(got, j, prefix), kind="layers")
    raise ValueError("expected two different orders")  # unreachable: the lists differ


def _position(order, i, prefix) -> str:
    return f"after {prefix + order[i - 1]!r}" if i else "first"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _short(class_name: str) -> str:
    return class_name.rsplit(".", 1)[-1]


def _compare_layer(a: LayerSummary, b: LayerSummary) -> list:
    out = []
    label = a.path
    if a.class_name != b.class_name:
        same_short = _short(a.class_name) == _short(b.class_name)
        out.append(Difference(label, "class", a.class_name if same_short else _short(a.class_name),
                              b.class_name if same_short else _short(b.class_name),
                              kind="layers"))
    for key in sorted(set(a.regularizers) | set(b.regularizers)):
        ea, eb = a.regularizers.get(key, "None"), b.regularizers.get(key, "None")
        if ea != eb:
            out.append(Difference(label, key, ea, eb))
    # Variables by position: one created without a name gets a new automatic one on reload.
    for wa, wb in zip(a.weights, b.weights):
        if wa[4] != wb[4]:
            out.append(Difference(label, f"regularizer of the variable {wa[0]!r}", wa[4], wb[4]))
    for what, ea, eb in (("dtype policy", a.dtype_policy, b.dtype_policy),
                         ("activation", a.activation, b.activation),
                         ("vocabulary", a.vocabulary, b.vocabulary)):
        if ea != eb:
            out.append(Difference(label, what, str(ea), str(eb)))
    return out


def _compare_weights(a: LayerSummary, b: LayerSummary) -> list:
    out = []
    if len(a.weights) != len(b.weights):
        out.append(Difference(a.path, "number of weights", str(len(a.weights)),
                              str(len(b.weights)), kind="weights"))
        return out
    for (name, shape, dtype, digest, _), (_, shape_b, dtype_b, digest_b, _) in zip(a.weights,
                                                                                   b.weights):
        if shape != shape_b:
            out.append(Difference(a.path, f"shape of weight {name!r}", str(shape),
                                  str(shape_b), kind="weights"))
        elif dtype != dtype_b:
            out.append(Difference(a.path, f"dtype of weight {name!r}", dtype, dtype_b,
                                  kind="weights"))
        elif digest != digest_b:
            out.append(Difference(a.path, f"weight {name!r}", f"sha256 {digest[:12]}",
                                  f"sha256 {digest_b[:12]} (other values)", kind="weights"))
    return out
