"""examples/prune_cnn.py: 30 % of each conv's filters removed by L1 norm, the rest fine-tunes."""
import keras
import pytest
from keras import layers

import prune_cnn


def same_architecture(filters1, filters2):
    inputs = keras.Input((16, 16, 3))
    x = layers.MaxPooling2D()(layers.ReLU()(layers.BatchNormalization()(
        layers.Conv2D(filters1, 3, padding="same")(inputs))))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(filters2, 3, padding="same")(x))
    return keras.Model(inputs, layers.Dense(3)(x))


@pytest.mark.slow
def test_pruning_removes_30_percent_of_filters_and_fine_tuning_recovers():
    rows = prune_cnn.main(epochs=3)
    (_, full, trained), (_, pruned, after_pruning), (_, tuned_params, tuned) = rows
    assert full == same_architecture(16, 32).count_params()
    assert pruned == tuned_params == same_architecture(16 - 4, 32 - 9).count_params()
    assert tuned > after_pruning  # the short fine-tune recovers what pruning cost
