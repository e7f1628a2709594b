"""`RewriteCallback`: apply non-structural passes to the model being trained, from `fit()`.

What it relies on (TensorFlow backend, measured; ../shared/KERAS_FACTS.md): `fit()` makes its
train function (a wrapper, not traced yet) *before* `on_train_begin`, and traces it on the
first batch. So a pass that edits live layers in place (a variable's regularizer, a Dropout's
noise_shape) in `on_train_begin` is seen from the first batch; a train function traced by an
earlier `fit` is not retraced by itself, so the callback rebuilds it
(`model.make_train_function(force=True)`). A pass that changes the model's structure cannot
work this way: the model object `fit()` trains cannot be swapped from a callback.
"""
from __future__ import annotations

import weakref

import keras

from keras_rewrite.passes import live
from keras_rewrite.errors import PassError
from keras_rewrite.passes import resolve_passes
from keras_rewrite.passes.base import pass_name

__all__ = ["RewriteCallback"]


class RewriteCallback(keras.callbacks.Callback):
    """Apply passes such as "l2" and "spatial_dropout" to the model when `fit()` starts.

    The passes run once per model, in place, in `on_train_begin` (their `apply_in_place`),
    so they count from the first batch; a later `fit()` of the same model with the same
    callback does not apply them again. What each pass did is kept in `results`.

    Args:
        passes: like `keras_rewrite.rewrite`'s: `Pass` objects or the short names "l2" and
            "spatial_dropout". Only passes that edit layer settings (``structural = False``,
            with an `apply_in_place` method) are accepted.

    Raises:
        PassError: at construction, for a structural pass ("reorder", `ReorderBlocks`, or a
            plain function, which may change anything); use `keras_rewrite.rewrite()` for
            those, before `fit()`.

    Example:
        >>> import keras_rewrite
        >>> from keras_rewrite.passes import L2Regularization
        >>> callback = keras_rewrite.RewriteCallback([L2Regularization(1e-4), "spatial_dropout"])
        >>> model.fit(x, y, epochs=2, callbacks=[callback])  # doctest: +SKIP
        >>> [r.changed_layers for r in callback.results]  # doctest: +SKIP
        [['conv2d', 'dense'], ['dropout']]
    """

    def __init__(self, passes):
        super().__init__()
        self.passes = resolve_passes(passes)
        for p in self.passes:
            self._check_in_place(p)
        self.results = []  # one PassResult per pass, from the last application
        self._applied_to = None  # weak reference to the model the passes were applied to

    @staticmethod
    def _check_in_place(p) -> None:
        name = pass_name(p)
        if getattr(p, "structural", True):
            why = ("a plain function may change the model's structure"
                   if not hasattr(p, "structural") else
                   "it changes the model's structure (structural=True)")
            raise PassError(
                f"RewriteCallback cannot apply pass '{name}': {why}. Keras builds the train "
                "function before on_train_begin, so the model cannot be rebuilt from a "
                "callback. Expected a non-structural pass such as 'l2' or 'spatial_dropout'. "
                f"Use keras_rewrite.rewrite(model, [...]) before fit() for '{name}'.")
        if not callable(getattr(p, "apply_in_place", None)):
            raise PassError(
                f"RewriteCallback cannot apply pass '{name}': expected a pass with an "
                f"apply_in_place(model) method. Received: {type(p).__name__} without one. "
                "Use keras_rewrite.rewrite(model, [...]) before fit() instead.")

    def on_train_begin(self, logs=None):
        model = self.model
        if self._applied_to is not None and self._applied_to() is model:
            return  # a later fit(): applied already, and applying again would change nothing
        restore = live.snapshot_live_state(model)
        results = []
        try:
            for p in self.passes:
                results.append(p.apply_in_place(model))
        except Exception as exc:
            restore()  # all or nothing: no half-modified model goes into fit()
            done = [pass_name(q) for q in self.passes[:len(results)]]
            raise PassError(
                f"RewriteCallback: pass '{pass_name(self.passes[len(results)])}' failed "
                f"({type(exc).__name__}: {exc}); the model is left as it was"
                + (f" (the changes of {', '.join(done)} were undone)" if done else "")) from exc
        self.results = results
        self._applied_to = weakref.ref(model)
        if any(r.modified for r in self.results):
            # fit() made its train function before calling us; one traced by an earlier fit
            # would ignore the new settings, so rebuild it (and the test function, whose
            # validation loss also counts regularizers). Untraced, this costs nothing.
            model.make_train_function(force=True)
            if getattr(model, "test_function", None) is not None:
                model.make_test_function(force=True)

    def __repr__(self):
        return f"RewriteCallback({self.passes!r})"
