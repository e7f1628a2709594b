"""Prune 30 % of the filters of a small CNN by L1 norm, then fine-tune it briefly.

Data are generated (nothing is downloaded): 16×16 RGB images whose class is which colour
channel is brightest. The script trains the CNN, deletes the 30 % of each conv layer's filters
with the smallest L1 norm (`keras_rewrite.surgery.channels`: the next layer's kernel loses the matching
input rows, BatchNormalization its statistics), and prints parameters and accuracy before,
right after pruning, and after one epoch of fine-tuning.

    python examples/prune_cnn.py
"""
import keras_rewrite  # first: it quiets TensorFlow's start-up logs, which must precede keras
import keras
import numpy as np
from keras import layers
from keras_rewrite import surgery


def data(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = rng.normal(0.0, 1.0, (n, 16, 16, 3)).astype("float32")
    x[np.arange(n), :, :, labels] += 0.15  # the class's channel is a little brighter
    return x, labels


def build():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(16, 3, padding="same", name="conv1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax", name="head")(x))


def compiled(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def main(fraction=0.3, epochs=3):
    keras.utils.set_random_seed(0)
    (x, y), (x_test, y_test) = data(2000, 0), data(500, 1)
    model = compiled(build())
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    rows = [("trained", model.count_params(), model.evaluate(x_test, y_test, verbose=0)[1])]
    pruned = model
    for name in ("conv1", "conv2"):
        channels = surgery.l1_norm_channels(pruned, name, fraction)
        pruned = surgery.delete_channels(pruned, name, channels)
    pruned = compiled(pruned)
    rows.append(("pruned", pruned.count_params(), pruned.evaluate(x_test, y_test, verbose=0)[1]))
    pruned.fit(x, y, epochs=1, batch_size=64, verbose=0)
    rows.append(("pruned + 1 epoch", pruned.count_params(),
                 pruned.evaluate(x_test, y_test, verbose=0)[1]))
    print("| model | parameters | test accuracy |")
    print("|---|---|---|")
    for label, params, accuracy in rows:
        print(f"| {label} | {params:,} | {accuracy:.3f} |")
    return rows


if __name__ == "__main__":
    main()
