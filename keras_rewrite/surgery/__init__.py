"""Model surgery on a built Keras 3 model: delete channels, delete, insert or replace a layer.

Each operation is a pass (`DeleteChannels`, `DeleteLayer`, `InsertLayer`, `ReplaceLayer`)
that edits the graph of `keras_rewrite.to_graph`, and a function of the same name that runs
it through `keras_rewrite.rewrite` and returns a NEW model (layer names and classes kept,
every weight that still fits carried over). The original model is never touched.

    from keras_rewrite import surgery

    pruned = surgery.delete_channels(model, "conv1", [0, 3])
    pruned = surgery.delete_channels(model, "conv1",
                                     surgery.l1_norm_channels(model, "conv1", 0.3))
    pruned = keras_rewrite.rewrite(model, [surgery.DeleteChannels("conv1", [0])])

Model-level surgery, each a pass too, in its own module: `add_outputs` / `feature_extractor`
(outputs.py), `truncate` / `replace_head` (heads.py), `set_input_channels` (inputs.py),
`rename_layers` (naming.py), `merge` (merging.py), `freeze` / `unfreeze` (freezing.py),
`replace_block` (blocks.py).

`layer` is a Layer object or a layer name, found anywhere in the model (nested models too).
Every refusal is a `SurgeryError` (a `RewriteError`) naming the layer and, for channels, the
index: see the error classes below.
"""
from __future__ import annotations

from keras_rewrite.surgery.channels import DeleteChannels
from keras_rewrite.surgery.errors import (ChannelIndexError, LayerNotFoundError, SurgeryError,
                                          SurgeryShapeError, TiedChannelsError,
                                          UnsupportedLayerError)
from keras_rewrite.surgery.layers import DeleteLayer, InsertLayer, ReplaceLayer
from keras_rewrite.surgery.locate import run
from keras_rewrite.surgery.selection import apoz_channels, l1_norm_channels

__all__ = ["delete_channels", "delete_layer", "insert_layer", "replace_layer",
           "l1_norm_channels", "apoz_channels", "DeleteChannels", "DeleteLayer", "InsertLayer",
           "ReplaceLayer", "SurgeryError", "LayerNotFoundError", "ChannelIndexError",
           "UnsupportedLayerError", "TiedChannelsError", "SurgeryShapeError"]


def delete_channels(model, layer, channels):
    """A copy of `model` without output `channels` of `layer` (see `DeleteChannels`)."""
    return run(model, DeleteChannels(layer, channels))


def delete_layer(model, layer):
    """A copy of `model` without `layer`; its consumers take its input (see `DeleteLayer`)."""
    return run(model, DeleteLayer(layer))


def insert_layer(model, layer, new_layer):
    """A copy of `model` with `new_layer` called on `layer`'s output (see `InsertLayer`)."""
    return run(model, InsertLayer(layer, new_layer))


def replace_layer(model, layer, new_layer):
    """A copy of `model` with `new_layer` in `layer`'s place (see `ReplaceLayer`)."""
    return run(model, ReplaceLayer(layer, new_layer))


# ------------------------------------------------------------------ model-level surgery

from keras_rewrite.surgery.heads import ReplaceHead, Truncate  # noqa: E402
from keras_rewrite.surgery.outputs import AddOutputs, FeatureExtractor  # noqa: E402

__all__ += ["add_outputs", "feature_extractor", "truncate", "replace_head", "AddOutputs",
            "FeatureExtractor", "Truncate", "ReplaceHead"]


def add_outputs(model, names):
    """A copy of `model` whose outputs also hold the outputs of `names` (see `AddOutputs`)."""
    return run(model, AddOutputs(names))


def feature_extractor(model, names):
    """A model giving {name: output of that layer} (see `FeatureExtractor`)."""
    return run(model, FeatureExtractor(names))


def truncate(model, at):
    """A copy of `model` cut at layer `at`: its output is the output (see `Truncate`)."""
    return run(model, Truncate(at))


def replace_head(model, at, head):
    """A copy of `model` cut at `at`, with `head` fed by its output (see `ReplaceHead`)."""
    return run(model, ReplaceHead(at, head))

from keras_rewrite.surgery.inputs import SetInputChannels  # noqa: E402

__all__ += ["set_input_channels", "SetInputChannels"]


def set_input_channels(model, n, how="sum", input_name=None):
    """A copy of `model` whose input has `n` channels (see `SetInputChannels`)."""
    return run(model, SetInputChannels(n, how, input_name))

from keras_rewrite.surgery.merging import Merge  # noqa: E402
from keras_rewrite.surgery.naming import RenameLayers  # noqa: E402

__all__ += ["rename_layers", "merge", "RenameLayers", "Merge"]


def rename_layers(model, prefix=None, mapping=None, fn=None):
    """A copy of `model` with renamed layers (see `RenameLayers`)."""
    return run(model, RenameLayers(prefix, mapping, fn))


def merge(models, how="outputs", name=None):
    """One model of several (see `Merge`: how="outputs" or "concat"; clashing layer names
    prefixed by their model's name and "_")."""
    models = list(models)
    if len(models) < 2:
        raise SurgeryError(f"expected at least two models to merge, received {len(models)}")
    return run(models[0], Merge(models[1:], how, name))

from keras_rewrite.surgery.freezing import Freeze, Unfreeze  # noqa: E402

__all__ += ["freeze", "unfreeze", "Freeze", "Unfreeze"]


def freeze(model, patterns):
    """A copy of `model` with the layers matching `patterns` frozen (see `Freeze`)."""
    return run(model, Freeze(patterns))


def unfreeze(model, patterns):
    """A copy of `model` with the layers matching `patterns` trainable (see `Unfreeze`)."""
    return run(model, Unfreeze(patterns))

from keras_rewrite.surgery.blocks import ReplaceBlock  # noqa: E402

__all__ += ["replace_block", "ReplaceBlock"]


def replace_block(model, first, last, new):
    """A copy of `model` with the layers from `first` to `last` replaced by `new` (see
    `ReplaceBlock`)."""
    return run(model, ReplaceBlock(first, last, new))
