"""Write your own pass: every ReLU becomes LeakyReLU, in a few lines.

A pass is a function (or a `Pass` subclass) that takes the graph, edits the nodes' `LayerSpec`s
and returns a `PassResult` saying what it changed. `rewrite` validates the graph after it,
rebuilds the model and carries every weight over. Here on the seed CNN (seed question 001),
whose activations are `Activation("relu")` layers; `keras.layers.ReLU` layers are handled too
(a conv's fused ``activation="relu"`` is a setting, not a layer, and is left as it is).

    python examples/custom_pass.py
"""
import keras_rewrite  # first: it quiets TensorFlow's start-up logs, which must precede keras
from keras import layers
from keras_rewrite.graph import iter_layer_nodes
from keras_rewrite.passes import Change, PassResult
from seed_models import build_cnn


def is_plain_relu(spec):
    if spec.cls is layers.Activation:
        return spec.config.get("activation") == "relu"
    if spec.cls is layers.ReLU:  # max(x, 0) only: no cap, no threshold, no slope
        return (spec.config.get("max_value") is None and not spec.config.get("threshold")
                and not spec.config.get("negative_slope"))
    return False


def relu_to_leaky(graph, negative_slope=0.1):
    """Replace every plain ReLU layer with LeakyReLU(negative_slope), keeping its name."""
    replaced = {}  # id(old spec) -> new spec: a shared layer is one spec and stays one
    changes = []
    for _, _, data in iter_layer_nodes(graph):
        spec = data["spec"]
        if id(spec) not in replaced and is_plain_relu(spec):
            config = {k: spec.config[k] for k in ("name", "trainable", "dtype") if k in spec.config}
            replaced[id(spec)] = spec.replace(
                cls=layers.LeakyReLU, config={**config, "negative_slope": negative_slope})
            changes.append(Change(spec.name, "replaced",
                                  f"{spec.class_name} -> LeakyReLU({negative_slope})"))
        data["spec"] = replaced.get(id(spec), spec)
    # LeakyReLU differs from ReLU for negative inputs: outputs do change.
    return PassResult("relu_to_leaky", modified=bool(changes), changes=changes,
                      outputs_unchanged=False)


def main():
    model = build_cnn()
    result = keras_rewrite.rewrite_with_report(model, [relu_to_leaky])
    for change in result.report.passes[0].changes:
        print(f"{change.layer}: {change.detail}")
    leaky = [layer.name for layer in result.model.layers if isinstance(layer, layers.LeakyReLU)]
    print(f"{len(leaky)} LeakyReLU layers now; {result.report.summary()}")
    return result


if __name__ == "__main__":
    main()
