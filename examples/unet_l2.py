"""Seed question 000: "Where do I add kernel_regularizer in a U-Net?"

The answer: L2 weight decay on every conv layer, starting with a small coefficient, possibly a
different one per layer. Here: 1e-4 on every Conv2D and Conv2DTranspose (the glob "conv2d*"),
1e-5 on the first block (its two convs, named exactly, which beats the glob), added to the
seed U-Net without touching its weights, then two epochs on random data.

    python examples/unet_l2.py              # 128x128 inputs, as in the notebook
    python examples/unet_l2.py --size 32    # faster
"""
import argparse

import keras_rewrite  # first: it quiets TensorFlow's start-up logs, which must precede keras
import keras
import numpy as np
from keras_rewrite.passes import L2Regularization
from seed_models import build_unet

ALL_CONVS, FIRST_BLOCK = 1e-4, 1e-5


def first_block_convs(model):
    """Names of the convs before the first pooling: the U-Net's first block."""
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.MaxPooling2D):
            return names
        if isinstance(layer, keras.layers.Conv2D):
            names.append(layer.name)
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="input height and width")
    parser.add_argument("--samples", type=int, default=16, help="random training images")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)

    model = build_unet((args.size, args.size, 3))
    per_layer = {"conv2d*": ALL_CONVS, **dict.fromkeys(first_block_convs(model), FIRST_BLOCK)}
    result = keras_rewrite.rewrite_with_report(model, [L2Regularization(0, per_layer=per_layer)])
    new_model = result.model  # compiled like the original: adam, binary cross-entropy, IoU
    for change in result.report.passes[0].changes:
        print(f"{change.layer}: {change.detail}")

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.samples, args.size, args.size, 3)).astype("float32")
    y = (rng.random((args.samples, args.size, args.size, 1)) > 0.5).astype("float32")
    history = new_model.fit(x, y, batch_size=4, epochs=args.epochs, verbose=0)

    penalty = float(sum(new_model.losses))  # sum over convs of c * ||kernel||^2, as trained
    print(f"L2 penalty after training: {penalty:.6g}")
    for epoch, loss in enumerate(history.history["loss"], 1):
        print(f"epoch {epoch}: loss {loss:.6g} (binary cross-entropy + L2 penalty)")
    return {"model": new_model, "report": result.report, "penalty": penalty,
            "loss": history.history["loss"]}


if __name__ == "__main__":
    main()
