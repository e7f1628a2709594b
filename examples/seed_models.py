"""The two models of the seed questions (../shared/seeds/), built as their askers wrote them.

- `build_unet`: the Kaggle U-Net of "Where do I add kernel_regularizer in a U-Net?"
  (seed 000), including its `Lambda(lambda x: x / 255)` input scaling.
- `build_cnn`: the Sequential CNN of "Correct order of SpatialDropout2D, BatchNormalization and
  activation?" (seed 001).
"""
import keras
from keras import layers


def build_unet(input_shape=(128, 128, 3), scale=None, compile=True):
    """The seed U-Net. `scale` replaces the `lambda x: x / 255` (e.g. a registered function)."""
    inputs = keras.Input(input_shape)
    s = layers.Lambda(scale if scale is not None else (lambda x: x / 255))(inputs)

    def conv(f, x):
        return layers.Conv2D(f, (3, 3), activation="relu", padding="same")(x)

    skips, x = [], s
    for f in (8, 16, 32, 64):
        x = conv(f, conv(f, x))
        skips.append(x)
        x = layers.MaxPooling2D((2, 2))(x)
    x = conv(128, conv(128, x))
    for f, skip in zip((64, 32, 16, 8), reversed(skips)):
        x = layers.Conv2DTranspose(f, (2, 2), strides=(2, 2), padding="same")(x)
        x = layers.concatenate([x, skip], axis=3)
        x = conv(f, conv(f, x))
    outputs = layers.Conv2D(1, (1, 1), activation="sigmoid")(x)
    model = keras.Model(inputs=[inputs], outputs=[outputs])
    if compile:
        model.compile(optimizer="adam", loss="binary_crossentropy",
                      metrics=[keras.metrics.BinaryIoU(target_class_ids=[0, 1], name="mean_iou")])
    return model


def build_cnn(input_shape=(32, 32, 3), num_classes=10, compile=True):
    """The seed CNN: [Conv-BN-ReLU]x2 - Pool - Dropout, twice, then Dense(512)-BN-ReLU-Dropout."""
    model = keras.Sequential([keras.Input(input_shape)])
    for filters in (32, 64):
        for _ in range(2):
            model.add(layers.Conv2D(filters, (3, 3)))
            model.add(layers.BatchNormalization())
            model.add(layers.Activation("relu"))
        model.add(layers.MaxPooling2D(pool_size=(2, 2)))
        model.add(layers.Dropout(0.2))
    return add_cnn_head(model, num_classes, compile)


def add_cnn_head(model, num_classes=10, compile=True):
    """The seed CNN's classifier: Flatten - Dense(512) - BN - ReLU - Dropout(0.4) - Dense - softmax."""
    model.add(layers.Flatten())
    model.add(layers.Dense(512))
    model.add(layers.BatchNormalization())
    model.add(layers.Activation("relu"))
    model.add(layers.Dropout(0.4))
    model.add(layers.Dense(num_classes))
    model.add(layers.Activation("softmax"))
    if compile:
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model
