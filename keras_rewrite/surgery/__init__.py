"""Model surgery (keras-surgeon's operations and more): each returns a new model, weights carried."""
from keras_rewrite.surgery.channels import (ChannelIndexError, DeleteChannels, DeleteLayer,
                                            InsertLayer, LayerNotFoundError, ReplaceLayer,
                                            SurgeryError, SurgeryShapeError, TiedChannelsError,
                                            UnsupportedLayerError, apoz_channels, delete_channels,
                                            delete_layer, insert_layer, l1_norm_channels,
                                            replace_layer)

__all__ = ["delete_channels", "delete_layer", "insert_layer", "replace_layer",
           "l1_norm_channels", "apoz_channels", "DeleteChannels", "DeleteLayer", "InsertLayer",
           "ReplaceLayer", "SurgeryError", "LayerNotFoundError", "ChannelIndexError",
           "UnsupportedLayerError", "TiedChannelsError", "SurgeryShapeError"]
