"""Write your own pass: every ReLU becomes LeakyReLU, as a rule of eight lines.

A rule is a pattern (here: one layer call, either an `Activation("relu")` or a plain `ReLU`
with no cap, threshold or slope), an optional `check` that may refuse a match with a reason,
and a `rewrite` returning the replacement. The replacement keeps the replaced layer's name,
dtype policy and trainable flag; a shared layer is replaced at every call; `rewrite` validates
the graph, rebuilds the model and carries every other weight over. Here on the seed CNN (seed
question 001), whose activations are `Activation("relu")` layers (a conv's fused
``activation="relu"`` is a setting, not a layer, and is left as it is).

    python examples/custom_pass.py
"""
import keras_rewrite  # first: it quiets TensorFlow's start-up logs, which must precede keras
from keras import layers
from keras_rewrite.passes.rules import L, Rule
from seed_models import build_cnn


class ReluToLeaky(Rule):
    """Every plain ReLU layer becomes LeakyReLU(0.1), keeping its name."""
    pattern = (L(layers.Activation, activation="relu")
               | L(layers.ReLU, max_value=None, threshold=0.0, negative_slope=0.0))
    outputs_unchanged = False  # LeakyReLU differs from ReLU on negative inputs

    def rewrite(self, match):
        return layers.LeakyReLU(negative_slope=0.1)


def main():
    model = build_cnn()
    print(ReluToLeaky().dry_run(model))
    result = keras_rewrite.rewrite_with_report(model, [ReluToLeaky()])
    for change in result.report.passes[0].changes:
        print(f"{change.layer}: {change.detail}")
    leaky = [layer.name for layer in result.model.layers if isinstance(layer, layers.LeakyReLU)]
    print(f"{len(leaky)} LeakyReLU layers now; {result.report.summary()}")
    return result


if __name__ == "__main__":
    main()
