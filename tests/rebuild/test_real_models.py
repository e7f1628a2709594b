"""Identity rewrite on keras.applications models (weights=None: nothing is downloaded) and on
a chain deeper than Keras can build at the default recursion limit. Slow: run in CI."""
import sys

import keras
import numpy as np
import pytest

import keras_rewrite
from helpers import assert_identical_copy, conv_chain, model_fingerprint

APPLICATIONS = {
    "ResNet50": (keras.applications.ResNet50, (64, 64, 3)),
    "MobileNetV2": (keras.applications.MobileNetV2, (64, 64, 3)),
    "DenseNet121": (keras.applications.DenseNet121, (64, 64, 3)),
    "EfficientNetB0": (keras.applications.EfficientNetB0, (64, 64, 3)),
    "InceptionV3": (keras.applications.InceptionV3, (75, 75, 3)),
    "ConvNeXtTiny": (keras.applications.ConvNeXtTiny, (64, 64, 3)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_application_identity_rewrite(name):
    build, shape = APPLICATIONS[name]
    model = build(weights=None, input_shape=shape, classes=10)
    before = model_fingerprint(model)
    result = keras_rewrite.rewrite_with_report(model)
    copy = result.model
    # Every weight carried over, not re-drawn (an untrained model's fresh values can equal
    # the original's by coincidence, e.g. ConvNeXt's constant layer-scale init).
    assert result.report.weights_carried == len(model.weights)
    assert result.report.weights_new == 0 and result.report.weights_dropped == 0
    x = np.random.default_rng(0).random((2, *shape), dtype="float32")
    assert_identical_copy(model, copy, x)
    assert model_fingerprint(model) == before


@pytest.mark.slow
def test_chain_deeper_than_the_default_recursion_limit():
    # 1,500 Conv-BN-ReLU-Dropout blocks = 6,000 layers: Keras itself needs a raised recursion
    # limit to build this; the user's rewrite must work with the default limit in force.
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        model = conv_chain(1500, filters=2, size=4)
    finally:
        sys.setrecursionlimit(old)
    assert len(model.layers) == 6001
    copy = keras_rewrite.rewrite(model)
    assert sys.getrecursionlimit() == old
    assert [l.name for l in copy.layers] == [l.name for l in model.layers]
    x = np.random.default_rng(0).random((1, 4, 4, 3), dtype="float32")
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(copy(x)))
    for a, b in zip(model.weights[-8:], copy.weights[-8:]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
