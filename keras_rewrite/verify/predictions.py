"""The project's one prediction comparison (`predict`, `max_abs_difference`) and its inputs
(`random_batch`, `sample_batch`): `keras_rewrite.convert_file`, the command line and the tests
use them.

Keras itself is imported inside the functions that need it, so importing this module is cheap.
"""
from __future__ import annotations

import math

from keras_rewrite.verify.walk import walk_layers

__all__ = ["predict", "max_abs_difference", "random_batch", "sample_batch", "FALLBACK_WORDS"]


def predict(model, x):
    """The model's inference outputs on `x` (``training=False``), in the model's own output
    structure (an array, a list, or a dict), as NumPy arrays.

    Calling the model directly avoids `Model.predict`'s tracing and batching.
    """
    import keras

    return keras.tree.map_structure(keras.ops.convert_to_numpy, model(x, training=False))


def max_abs_difference(a, b) -> float:
    """The largest absolute difference between two nested structures of outputs.

    Dicts are matched by key, lists and tuples by position. NaN where both are NaN counts as
    equal; inf when keys, lengths, shapes or a NaN differ. Arrays of strings or bytes count
    0 when equal, else inf.

    >>> import numpy as np
    >>> max_abs_difference({"a": np.zeros(2), "b": np.ones(2)},
    ...                    {"b": np.ones(2), "a": np.full(2, 0.5)})
    0.5
    >>> max_abs_difference({"a": np.zeros(2)}, {"b": np.zeros(2)})
    inf
    """
    import numpy as np

    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or set(a) != set(b):
            return math.inf
        return max((max_abs_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))) or \
                len(a) != len(b):
            return math.inf
        return max((max_abs_difference(u, v) for u, v in zip(a, b)), default=0.0)
    u, v = np.asarray(a), np.asarray(b)
    if u.shape != v.shape:
        return math.inf
    if not u.size:
        return 0.0
    if u.dtype.kind not in "biufc" or v.dtype.kind not in "biufc":
        return 0.0 if np.array_equal(u, v) else math.inf
    u64, v64 = u.astype("float64"), v.astype("float64")
    both_nan = np.isnan(u64) & np.isnan(v64)
    diff = np.where(both_nan, 0.0, np.abs(u64 - v64))
    return math.inf if np.isnan(diff).any() else float(np.max(diff))


# --------------------------------------------------------------------------- a random batch


FALLBACK_WORDS = ("the", "cat", "sat", "on", "a", "mat")


def random_batch(model, batch: int = 4, seed: int = 0, unknown_dim: int = 32):
    """A reproducible random batch for `model`: standard normal floats, small integers, and
    for string inputs words from the model's vocabulary.

    Unknown non-batch dimensions become `unknown_dim` (32 survives five 2x poolings).
    A string input feeding a ``StringLookup`` gets one vocabulary word per element; one feeding
    a ``TextVectorization`` gets a few words per element (the vocabulary of the model's lookup
    layers in order, the first to the first string input; fixed English words when the model
    has no vocabulary).
    Returns one array for a single-input model, else the arrays in the model's input
    structure (a list, or a dict for dict inputs).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    vocabularies = iter(_string_vocabularies(model))
    xs = []
    for tensor in model.inputs:
        shape = [batch] + [unknown_dim if d is None else d for d in tensor.shape[1:]]
        dtype = str(tensor.dtype)
        if dtype == "string":
            words, per_element = next(vocabularies, (FALLBACK_WORDS, 1))
            picks = rng.integers(0, len(words), size=shape + [per_element])
            xs.append(np.array([" ".join(words[i] for i in row)
                                for row in picks.reshape(-1, per_element)]).reshape(shape))
        elif "int" in dtype:
            xs.append(rng.integers(0, 2, size=shape).astype(dtype))
        elif dtype == "bool":
            xs.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            xs.append(rng.standard_normal(shape).astype(dtype))
    if len(xs) == 1:
        return xs[0]
    import keras

    # In the model's own input structure (a dict for dict inputs), which Keras expects.
    return keras.tree.pack_sequence_as(model.input, xs)


UNKNOWN_DIMS = (32, 16, 8)


def sample_batch(model, batch: int = 4, seed: int = 0):
    """A random batch `model` accepts and its inference outputs, as (x, outputs).

    Unknown dimensions are tried at 32, then 16 and 8, for models with a length limit (a
    KerasHub GPT-2 with ``max_sequence_length=16`` refuses 32 tokens).

    Raises:
        The error of the first attempt when the model accepts none of them.
    """
    first = None
    for dim in UNKNOWN_DIMS:
        x = random_batch(model, batch=batch, seed=seed, unknown_dim=dim)
        try:
            return x, predict(model, x)
        except Exception as exc:
            first = first or exc
            if all(None not in tuple(t.shape[1:]) for t in model.inputs):
                break  # nothing to shrink
    raise first


def _string_vocabularies(model):
    """(words, words per element) for each lookup layer taking strings, in layer order:
    StringLookup one word per element, TextVectorization three."""
    import keras

    found, inside = [], ""
    for path, layer in walk_layers(model):
        if inside and path.startswith(inside):  # TextVectorization's own StringLookup
            continue
        if isinstance(layer, keras.layers.TextVectorization):
            per_element, inside = 3, path + "/"
        elif isinstance(layer, keras.layers.StringLookup) and not layer.invert:
            per_element = 1
        else:
            continue
        try:
            vocabulary = layer.get_vocabulary()
        except Exception:  # not adapted, or a table that cannot be read: use fixed words
            vocabulary = []
        special = {"", "[UNK]", getattr(layer, "oov_token", None),
                   getattr(layer, "mask_token", None)}
        words = [w.decode() if isinstance(w, bytes) else str(w) for w in vocabulary]
        words = [w for w in words if w not in special][:50]
        found.append((tuple(words) or FALLBACK_WORDS, per_element))
    return found
