"""`ReplaceActivation`: one activation function becomes another, in layers and fused arguments.

What it relies on. Keras resolves an activation name with ``keras.activations.get``, and its
aliases are one function object: ``"swish"`` is ``"silu"``, ``"hard_swish"`` is
``"hard_silu"``, None is ``"linear"``. A layer config always holds the function's own name
(``Dense(activation="swish").get_config()["activation"] == "silu"``). Two names are the same
activation when they resolve to the same function. A layer *computes* the activation `old` when:

=====================================  ============================================================
``Activation(a)``                      ``a`` is `old`
any other layer with an ``activation``  its ``activation`` is `old` (fused: Dense, EinsumDense,
config entry                           Conv*, ConvTranspose, Depthwise/SeparableConv, SimpleRNN /
                                       LSTM / GRU's ``activation``, not ``recurrent_activation``)
``ReLU(max_value, negative_slope,      ``"relu"`` with the defaults (None, 0, 0); ``"relu6"``
threshold)``                           with ``max_value=6`` and the other two defaults
``LeakyReLU(negative_slope)``          ``"leaky_relu"`` when ``negative_slope == 0.2`` (the
                                       function's default; the layer's own default is 0.3)
``ELU(alpha)``                         ``"elu"`` when ``alpha == 1.0``
=====================================  ============================================================

These equalities are exact: ``ReLU()``, ``ReLU(max_value=6)``, ``LeakyReLU(0.2)`` and ``ELU()``
give bit-identical outputs to ``relu``, ``relu6``, ``leaky_relu`` and ``elu``
(`tests/test_replace_activation.py` checks it). A ReLU / LeakyReLU / ELU layer with other
settings computes another function; when its class is one of `old`'s forms it is left as it
is, with the reason in the report (MobileNetV2's ``ReLU(max_value=6.0)`` layers are relu6, not
relu). Subclasses of these layer classes are not taken for them (they may compute anything).

How a match is replaced: an ``Activation`` layer and a fused argument get ``activation=new``
in their config (the layer keeps its name, class and weights); a ReLU / LeakyReLU / ELU layer
becomes ``Activation(new)`` with the same name, dtype policy and trainable flag. A shared layer
changes at every call; nested models are rewritten inside.

Outputs: when `old` and `new` are one function (``relu`` -> ``relu``, ``swish`` -> ``silu``)
there is nothing to do and the pass reports "unchanged". Otherwise each replacement changes
what that layer computes, and its report line says so: ``relu -> gelu: outputs change``.
"""
from __future__ import annotations

import difflib

import keras
from keras import layers

from keras_rewrite.errors import PassError
from keras_rewrite.report import Change, PassResult
from keras_rewrite.passes.rules import L, Refusal, Rule
from keras_rewrite.graph.view import View

__all__ = ["ReplaceActivation"]

# Layer classes that compute a named activation, with the settings under which they do:
# {class: {activation name: {config key: value}}}. Exact classes only (see the docstring).
_LAYER_FORMS = {
    layers.ReLU: {"relu": {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
                  "relu6": {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0}},
    layers.LeakyReLU: {"leaky_relu": {"negative_slope": 0.2}},
    layers.ELU: {"elu": {"alpha": 1.0}},
}
_NOT_ACTIVATIONS = {"get", "serialize", "deserialize"}


def _activation_names() -> list[str]:
    return sorted(n for n in dir(keras.activations)
                  if not n.startswith("_") and n not in _NOT_ACTIVATIONS)


def _canonical(value, argument: str) -> str:
    """The Keras name of the activation `value` (a name or a keras.activations function)."""
    if callable(value) and not isinstance(value, type):
        try:
            name = keras.activations.serialize(value)
        except Exception:
            name = None
        if isinstance(name, str) and _resolve(name) is value:
            return name
        raise PassError(f"Expected {argument}= to be an activation name such as 'relu' or "
                        f"'gelu', or a keras.activations function. Received: {argument}="
                        f"{value!r}, which Keras does not know by a name")
    if not isinstance(value, str) or not value:
        raise PassError(f"Expected {argument}= to be an activation name such as 'relu', "
                        f"'gelu' or 'silu' (see keras.activations). Received: {argument}="
                        f"{value!r} of type {type(value).__name__}")
    function = _resolve(value)
    if function is None:
        near = difflib.get_close_matches(value, _activation_names(), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
        raise PassError(f"Expected {argument}= to be an activation name of keras.activations "
                        f"({', '.join(_activation_names())}). Received: {argument}={value!r}"
                        f"{hint}")
    return keras.activations.serialize(function)


def _resolve(name):
    """The function Keras means by `name`, or None."""
    try:
        return keras.activations.get(name)
    except (ValueError, TypeError):
        return None


class ReplaceActivation(Rule):
    """Replace the activation `old` by `new` in activation layers and fused ``activation=``.

    Args:
        old: the activation to replace: a name of ``keras.activations`` ("relu", "gelu",
            "silu" or its alias "swish", "relu6", "leaky_relu", "linear", ...) or one of its
            functions (``keras.activations.relu``). Aliases are one activation.
        new: the activation to put in its place (same forms).

    Raises:
        PassError: `old` or `new` is not an activation Keras knows by a name.

    Example:
        >>> import keras_rewrite
        >>> from keras_rewrite.passes import ReplaceActivation
        >>> new_model = keras_rewrite.rewrite(model, [ReplaceActivation("relu", "gelu")])  # doctest: +SKIP
    """

    short_name = "replace_activation"
    summary = "replaces one activation by another, in activation layers and fused activation= arguments"
    outputs_unchanged = False  # declared; old and new being one function is reported as unchanged
    structural = True  # a ReLU layer becomes an Activation layer: a new layer class

    def __init__(self, old, new):
        self.old = _canonical(old, "old")
        self.new = _canonical(new, "new")
        self._given = (old if isinstance(old, str) else self.old,
                       new if isinstance(new, str) else self.new)
        self._old_function = _resolve(self.old)
        self.pattern = L(where=self._concerned)

    def get_config(self) -> dict:
        return {"old": self._given[0], "new": self._given[1]}

    def __repr__(self):
        return f"{self.name}(old={self._given[0]!r}, new={self._given[1]!r})"

    @property
    def same_function(self) -> bool:
        """True when `old` and `new` are one function in Keras: the pass has nothing to do."""
        return self.old == self.new

    # ----------------------------------------------------------------------- matching

    def _verdict(self, node) -> tuple[str, str | None] | None:
        """("match", how) when `node`'s layer computes `old`; ("refuse", why) when it is a
        form of `old` with other settings; None when it has nothing to do with `old`."""
        cls, config = node.layer_class, node.config
        forms = _LAYER_FORMS.get(cls)
        if forms is not None:
            if self.old not in forms:
                return None
            wanted = forms[self.old]
            if all(_number_equal(config.get(k), v) for k, v in wanted.items()):
                return "match", f"{cls.__name__} layer"
            settings = ", ".join(f"{k}={config.get(k)!r}" for k in wanted)
            other = next((name for name, w in forms.items()
                          if all(_number_equal(config.get(k), v) for k, v in w.items())), None)
            if other is not None:
                return "refuse", (f"{cls.__name__}({settings}) computes {other!r}, not "
                                  f"{self.old!r}; left as it is")
            expected = ", ".join(f"{k}={v!r}" for k, v in wanted.items())
            return "refuse", (f"{cls.__name__}({settings}) is not {self.old!r}, which is "
                              f"{cls.__name__}({expected}); left as it is")
        if "activation" not in config:
            return None
        value = config["activation"]
        if not (value is None or isinstance(value, str)) or _resolve(value) is not \
                self._old_function:
            return None
        if cls is layers.Activation:
            return "match", "Activation layer"
        return "match", f"fused in {cls.__name__}"

    def _concerned(self, node) -> bool:
        return self._verdict(node) is not None

    def check(self, match):
        verdict = self._verdict(match[0])
        if verdict[0] == "refuse":
            return Refusal(verdict[1])
        return None

    def rewrite(self, match):
        """The matched node with ``activation=new`` in its config, or ``Activation(new)`` in
        place of a ReLU / LeakyReLU / ELU layer."""
        node = match[0]
        if node.layer_class in _LAYER_FORMS:
            return layers.Activation(self.new)
        node.set_config(activation=self.new)
        return node

    # ------------------------------------------------------------------------ the pass

    def run(self, graph) -> PassResult:
        if self.same_function:
            return PassResult(self.name, modified=False, outputs_unchanged=True)
        view = View(graph)
        changes = []
        for match in self.find(view):
            node = match[0]
            if match.refused:
                changes.append(Change(node.name, "skipped", f"{node.class_name}: {match.reason}"))
                continue
            how = self._verdict(node)[1]
            calls = len(node.calls)
            replacement = self.rewrite(match)
            if replacement is not node:
                view.replace(node, replacement)
            shared = f"; a shared layer: all {calls} calls" if calls > 1 else ""
            became = "" if replacement is node else ", now an Activation layer"
            changes.append(Change(node.name, "replaced_activation",
                                  f"{self.old} -> {self.new} ({how}{became}{shared}): "
                                  "outputs change"))
        modified = any(c.action != "skipped" for c in changes)
        return PassResult(self.name, modified=modified, changes=changes,
                          outputs_unchanged=not modified)


def _number_equal(value, expected) -> bool:
    if expected is None or value is None:
        return value is expected
    try:
        return float(value) == float(expected)
    except (TypeError, ValueError):
        return False
