"""Weights a pass computes (spec.weights) reach the rebuilt layer and the report."""
import keras
import numpy as np
import pytest

import keras_rewrite as kr
from keras_rewrite.passes import PassResult


def model():
    x = keras.Input((3,), name="x")
    return keras.Model(x, keras.layers.Dense(2, name="d")(x))


def test_weights_a_pass_sets_are_assigned_and_reported_as_transformed():
    m = model()
    kernel = np.arange(6, dtype="float32").reshape(3, 2)

    def set_kernel(graph):
        spec = graph.nodes["d"]["spec"]
        spec.weights = {"kernel": kernel}
        return PassResult("set_kernel", modified=True, outputs_unchanged=False)

    result = kr.rewrite_with_report(m, [set_kernel])
    layer = result.model.get_layer("d")
    assert np.array_equal(layer.kernel.numpy(), kernel)
    assert np.array_equal(layer.bias.numpy(), m.get_layer("d").bias.numpy())
    record = result.report.layers["d"]
    assert record.transformed == ["kernel"] and record.carried == ["bias"]
    assert not np.array_equal(m.get_layer("d").kernel.numpy(), kernel)  # original untouched


@pytest.mark.parametrize("weights,match", [
    ({"kernel": np.zeros((2, 2), "float32")}, r"weight 'kernel' of shape \(2, 2\); expected "
                                               r"shape \(3, 2\)"),
    ({"gamma": np.zeros(2, "float32")}, r"'gamma', which the rebuilt Dense does not have"),
])
def test_a_pass_weight_that_does_not_fit_is_a_weight_transfer_error(weights, match):
    def bad(graph):
        graph.nodes["d"]["spec"].weights = weights
        return PassResult("bad", modified=True, outputs_unchanged=False)

    with pytest.raises(kr.WeightTransferError, match=match):
        kr.rewrite(model(), [bad])
