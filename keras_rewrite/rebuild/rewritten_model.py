"""Rewritten models that save what their layers' configs cannot say: `RewrittenFunctional`,
and a class that saves itself as constructor arguments (a KerasHub backbone or task) with
`SavesRewrite` mixed in (`class_keeping_rewrite`), which stays that class: its methods, its
preprocessor, `generate()`. Both save themselves in one of two ways, and both load through
`RewrittenFunctional.from_config` (the files of the second name that registered class):

- **recipe**, for a rewritten model whose original class describes itself by constructor
  arguments (every KerasHub backbone and task): such a class's layers often cannot be saved
  one by one (KerasHub's LlamaTransformerDecoder, ViTPatchingAndEmbedding, a loaded Gemma's
  RMSNormalization), so the file holds the original's own config and the built-in passes with
  their settings; loading builds the original from its arguments, applies the passes again
  (moving its fresh variables, nothing copied) and Keras then loads the trained weights into
  the result, whose layers are the same by name and order. A nested model of such a result
  (a task's backbone) saved alone holds the same recipe and the path down to it.
- **graph**, otherwise: the Functional graph, plus the regularizers below.

L2 on a kernel held by a sub-layer of a custom layer (a keras.io transformer block, every
KerasHub encoder/decoder block) is set on the sub-layer of the rebuilt model, but the custom
layer's `get_config` only holds its constructor arguments: a plain Functional model saved to a
file would reload with those sub-layers re-created without the regularizer, losing the rewrite
silently. A model holding such settings is rebuilt as this registered subclass of Functional: it
saves its graph like any Functional model, plus the sub-layer regularizers, and sets them again
when it is loaded. Loading needs ``import keras_rewrite`` first (as a KerasHub model needs
``import keras_hub``), and works in safe mode.

    >>> import keras, keras_rewrite  # doctest: +SKIP
    >>> model = keras.saving.load_model("rewritten.keras")  # doctest: +SKIP
"""
from __future__ import annotations

import keras

from keras_rewrite import _keras
from keras_rewrite.rebuild import layer_copy
from keras_rewrite.errors import RewriteError
from keras_rewrite.passes import deserialize_passes

__all__ = ["RewrittenFunctional", "SavesRewrite", "class_keeping_rewrite", "refuse_cached_path",
           "set_recipe_runner"]

# (original model, passes) -> the rewritten model: `keras_rewrite.rebuild.pipeline` sets it when
# imported, so this module, which the pipeline imports, does not import it.
_recipe_runner = None


def set_recipe_runner(runner) -> None:
    """Set what loading a recipe calls: ``runner(original_model, passes)`` -> rewritten model."""
    global _recipe_runner
    _recipe_runner = runner


class SavesRewrite:
    """What a rewritten model needs to save what its layers' configs cannot say: a recipe, or
    the sub-layer regularizers beside its graph. Mixed into `RewrittenFunctional` and into the
    classes `class_keeping_rewrite` makes; both load through `RewrittenFunctional.from_config`.

    `sublayer_regularizers` maps a layer name to ``[[sub-layer index, config key, variable
    attribute, in_cell, serialized regularizer], ...]`` (see `LayerSpec.sublayer_regularizers`).
    """

    def get_config(self):
        if self.recipe is not None:
            return {"name": self.name, "trainable": self.trainable, "recipe": self.recipe}
        config = _keras.graph_config(self)
        config["sublayer_regularizers"] = {
            name: [[index, key, attr, in_cell, serialized]
                   for (index, key), (attr, in_cell, serialized) in settings.items()]
            for name, settings in self.sublayer_regularizers.items()}
        return config

    @property
    def recipe(self) -> dict | None:
        """``{"model": the original's serialized config, "passes": built-in passes}`` or None;
        ``"part"`` (layer names from the top model down) for a nested model of that result."""
        return getattr(self, "_recipe", None)

    def set_recipe(self, recipe: dict) -> None:
        object.__setattr__(self, "_recipe", recipe)

    @property
    def sublayer_regularizers(self) -> dict:
        return getattr(self, "_sublayer_regularizers", {})

    def set_sublayer_regularizers(self, by_layer: dict) -> None:
        """Set the regularizers on this model's layers (by layer name) and remember them."""
        for name, settings in by_layer.items():
            layer_copy.set_sublayer_regularizers(self.get_layer(name), settings)
        object.__setattr__(self, "_sublayer_regularizers", dict(by_layer))


@keras.saving.register_keras_serializable("keras_rewrite")
class RewrittenFunctional(SavesRewrite, _keras.Functional):
    """A Functional model whose sub-layer regularizers survive saving and loading; it also
    loads every `class_keeping_rewrite` class (their files name it)."""

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if "recipe" in config:
            return cls._from_recipe(config, custom_objects)
        config = dict(config)
        saved = config.pop("sublayer_regularizers", {})
        model = super().from_config(config, custom_objects=custom_objects)
        model.set_sublayer_regularizers({
            name: {(index, key): (attr, in_cell, serialized)
                   for index, key, attr, in_cell, serialized in entries}
            for name, entries in saved.items()})
        return model

    @classmethod
    def _from_recipe(cls, config, custom_objects):
        if _recipe_runner is None:
            raise RewriteError("loading a rewritten model saved as a recipe needs the rewrite "
                               "pipeline; expected `import keras_rewrite` before loading; "
                               "received a file loaded with only keras_rewrite.rebuild imported")
        recipe = config["recipe"]
        original = keras.saving.deserialize_keras_object(recipe["model"],
                                                         custom_objects=custom_objects)
        passes = deserialize_passes(recipe["passes"])
        model = _recipe_runner(original, passes)
        for name in recipe.get("part", ()):
            model = model.get_layer(name)
        if not isinstance(model, SavesRewrite):
            raise TypeError(f"re-applying {[p['class'] for p in recipe['passes']]} to "
                            f"{type(original).__name__} gave a {type(model).__name__} that no "
                            "pass changed; expected a rewritten model (the passes no longer "
                            "change that model)")
        if model.name != config.get("name", model.name):
            object.__setattr__(model, "_name", config["name"])
        return model


# cls -> its class_keeping_rewrite subclass, made once per class.
_KEEPING = {}
# The methods of a KerasHub CausalLM that run its layers by attribute, not through its graph.
CACHED_PATH_METHODS = ("call_with_cache", "generate", "score")


def class_keeping_rewrite(cls):
    """`cls` (a class that saves itself as constructor arguments: a KerasHub backbone or task)
    with `SavesRewrite` mixed in, so that a rewritten instance stays a `cls` (every method, the
    preprocessor, `generate`) and its file reloads with the rewrite. Its name is `cls`'s.

    A class with a cached path (a CausalLM's `generate`, see CACHED_PATH_METHODS) refuses it
    once `refuse_cached_path` says why that path no longer computes what the graph does.
    """
    made = _KEEPING.get(cls)
    if made is None:
        methods = {"__module__": __name__, "__qualname__": cls.__qualname__,
                   "__doc__": cls.__doc__}
        for method in CACHED_PATH_METHODS:
            if callable(getattr(cls, method, None)):
                methods[method] = _guarded(method)
        made = _KEEPING[cls] = type(cls.__name__, (SavesRewrite, cls), methods)
        _keras.save_class_as(made, keras.saving.get_registered_name(RewrittenFunctional))
    return made


def refuse_cached_path(model, reason: str) -> None:
    """Make `model`'s cached-path methods (CACHED_PATH_METHODS) raise RewriteError(reason)."""
    object.__setattr__(model, "_cached_path_refused", reason)


def _guarded(method):
    def guarded(self, *args, **kwargs):
        reason = getattr(self, "_cached_path_refused", None)
        if reason is not None:
            raise RewriteError(f"model '{self.name}': {method}() is refused: {reason}")
        return getattr(super(type(self), self), method)(*args, **kwargs)

    guarded.__name__ = method
    return guarded
