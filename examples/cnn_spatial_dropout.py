"""Seed question 001: where do SpatialDropout, BatchNormalization and the activation go?

Two CNNs from the question (../shared/seeds/README.md) are linted, rewritten with the three
seed passes (and `drop_bias_before_bn`), and linted again:

- the asker's model as written (`seed_models.build_cnn`): Conv → BN → ReLU, pooling, then
  plain Dropout on the feature maps, and no weight regularization;
- the order the asker proposed, ``Conv → Dropout → BN → Activation → MaxPooling``, with the
  plain Dropout they have today.

`l2` adds L2 weight decay to every kernel, `spatial_dropout` turns Dropout on feature maps into
SpatialDropout2D, `reorder` puts each block in the answer's order Conv → BN → Activation →
MaxPooling → Dropout, and `drop_bias_before_bn` removes the conv/dense biases that the
BatchNormalization right after cancels (folded into its moving mean). What is left afterwards is what the answer calls a design decision:
BatchNormalization too soon after a dropout.

Run: ``python examples/cnn_spatial_dropout.py``
"""
import textwrap

import keras
from keras import layers

import keras_rewrite
from seed_models import add_cnn_head, build_cnn

PASSES = ["l2", "spatial_dropout", "reorder", "drop_bias_before_bn"]


def build_proposed_cnn(input_shape=(32, 32, 3), num_classes=10):
    """The seed CNN with each group in the order the asker proposed (before swapping in
    SpatialDropout): Conv → Dropout → BatchNorm → Activation → MaxPooling."""
    model = keras.Sequential([keras.Input(input_shape)], name="proposed_cnn")
    for filters in (32, 64):
        model.add(layers.Conv2D(filters, (3, 3)))
        model.add(layers.Dropout(0.2))
        model.add(layers.BatchNormalization())
        model.add(layers.Activation("relu"))
        model.add(layers.MaxPooling2D(pool_size=(2, 2)))
    return add_cnn_head(model, num_classes)


def describe(layer) -> str:
    text = type(layer).__name__
    config = layer.get_config()
    if config.get("kernel_regularizer"):
        text += " +L2"
    if config.get("activation") not in (None, "linear"):
        text += f"({config['activation']})"
    return text


def layer_table(before, after) -> str:
    """Layers in call order, before and after, side by side; '*' marks a changed row."""
    rows = [(f"{a.name}: {describe(a)}" if a else "", f"{b.name}: {describe(b)}" if b else "")
            for a, b in _zip_longest(before.layers, after.layers)]
    width = max(len(r[0]) for r in rows + [("before", "")])
    lines = [f"    {'before'.ljust(width)}   after"]
    lines += [f"  {'*' if a != b else ' '} {a.ljust(width)}   {b}" for a, b in rows]
    return "\n".join(lines)


def _zip_longest(a, b):
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else None, b[i] if i < len(b) else None) for i in range(n)]


def findings_text(findings) -> str:
    if not findings:
        return "  none"
    lines, explained = [], set()
    for f in findings:
        fix = f"fixed by '{f.fixed_by}'" if f.fixed_by else "needs a design change"
        lines.append(f"  [{f.rule}] {', '.join(f.layers)} ({fix})")
        if f.rule not in explained:  # each explanation once per list
            explained.add(f.rule)
            lines.append(textwrap.fill(f.explanation, 92, initial_indent="      ",
                                       subsequent_indent="      "))
    return "\n".join(lines)


def rewrite_and_explain(title, model) -> dict:
    findings_before = keras_rewrite.lint(model)
    result = keras_rewrite.rewrite_with_report(model, PASSES)
    findings_after = keras_rewrite.lint(result.model)
    print(f"=== {title} ===")
    print(f"\nfindings before ({len(findings_before)}):")
    print(findings_text(findings_before))
    print("\npasses:")
    for p in result.report.passes:
        print(f"  {p.pass_name}: {'modified' if p.modified else 'nothing to do'}")
        for c in p.changes:
            if c.action != "skipped":
                print(f"    {c.layer}: {c.action} - {c.detail}")
    print(f"  inference outputs provably unchanged: {result.report.outputs_unchanged}")
    print("\nlayer order:")
    print(layer_table(model, result.model))
    print(f"\nfindings after ({len(findings_after)}):")
    print(findings_text(findings_after))
    print()
    return {"model": model, "new_model": result.model, "report": result.report,
            "findings_before": findings_before, "findings_after": findings_after}


def main() -> dict:
    """Run both models; return, per model, the models, the report and the findings."""
    return {
        "seed_cnn": rewrite_and_explain("the seed CNN, as the asker wrote it", build_cnn()),
        "proposed_cnn": rewrite_and_explain(
            "the asker's proposed order: Conv -> Dropout -> BN -> Activation -> MaxPooling",
            build_proposed_cnn()),
    }


if __name__ == "__main__":
    main()
