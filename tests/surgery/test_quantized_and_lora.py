"""Surgery on quantized (int8, int4, float8), LoRA and QLoRA models, and on frozen parts
(keras_rewrite.surgery.kernel_state; issue 16).

delete_channels edits the variables quantization and LoRA keep beside a kernel with the
kernel: each is compared with `np.delete` of the original's array, and predictions with a copy
of the original whose deleted channels are zeros at their producer (a ReLU after a bias of
-1e9), so they reach the consumer as zeros. Where the edit cannot be exact (int4's
packed input rows, new input channels of a quantized kernel) it is an `UnsupportedLayerError`
naming the layer and the mode. The other surgery leaves the untouched layers as they were:
their state at every depth (variables with paths, dtypes and trainable flags, policies,
quantization modes, LoRA ranks) and values are the original's.
"""
import warnings
from unittest import mock

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_rewrite as kr
from keras_rewrite import surgery
from keras_rewrite.surgery import UnsupportedLayerError
from keras_rewrite.verify.layer_state import layer_state

X = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
MODES = ["int8", "int4", "float8", "lora", "qlora"]


def _quantize(model, mode):
    with warnings.catch_warnings(), mock.patch("gc.collect", lambda *args: 0):
        warnings.simplefilter("ignore")
        model.quantize(mode)


def mlp(mode, seed=3):
    """Dense 16 -> Dropout -> Dense 12 -> Dense 4, in state `mode`; LoRA adapters hold random
    values (a trained adapter: dropping or redrawing one changes predictions)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8,))
    x = L.Dense(16, activation="relu", name="d1")(inp)
    x = L.Dropout(0.1, name="drop")(x)
    x = L.Dense(12, activation="relu", name="d2")(x)
    out = L.Dense(4, name="d3")(x)
    model = keras.Model(inp, out)
    if mode in ("int8", "int4", "float8", "qlora"):
        _quantize(model, "int8" if mode == "qlora" else mode)
    if mode in ("lora", "qlora"):
        rng = np.random.default_rng(seed)
        for name in ("d1", "d2", "d3"):
            layer = model.get_layer(name)
            layer.enable_lora(2)
            layer.lora_kernel_b.assign(rng.normal(size=layer.lora_kernel_b.shape) * 0.3)
    return model


def arrays(layer):
    return {v.name: np.asarray(keras.ops.convert_to_numpy(v)) for v in layer.weights}


def zeroed_at_producer(model, name, channels):
    """A copy of `model` whose ReLU layer `name` makes exact zeros on `channels`: their bias
    is -1e9 (what the kernel holds, packed, quantized or adapted, cannot outweigh it)."""
    copy = kr.rewrite(model, [])
    bias = copy.get_layer(name).bias
    value = np.array(keras.ops.convert_to_numpy(bias))
    value[channels] = -1e9
    bias.assign(value)
    return copy


def unpacked(layer_arrays, units):
    """The int8 values of an int4 kernel, unpacked along its output axis by Keras."""
    return np.asarray(keras.ops.convert_to_numpy(
        keras.quantizers.unpack_int4(layer_arrays["kernel"], units, axis=-1)))


@pytest.mark.parametrize("mode", MODES)
def test_delete_channels_edits_quantized_and_lora_variables_with_the_kernel(mode):
    model = mlp(mode)
    before = [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]
    channels = [0, 5, 11]
    pruned = surgery.delete_channels(model, "d1", channels)

    old1, new1 = arrays(model.get_layer("d1")), arrays(pruned.get_layer("d1"))
    old2, new2 = arrays(model.get_layer("d2")), arrays(pruned.get_layer("d2"))
    assert set(new1) == set(old1) and set(new2) == set(old2)
    if mode == "int4":  # packed along the output axis: compare the unpacked integers
        np.testing.assert_array_equal(unpacked(new1, 13), np.delete(unpacked(old1, 16),
                                                                    channels, axis=-1))
        np.testing.assert_array_equal(unpacked(new2, 12), np.delete(unpacked(old2, 12),
                                                                    channels, axis=0))
        np.testing.assert_array_equal(new2["g_idx"], np.delete(old2["g_idx"], channels))
    per_output = ("kernel_scale", "kernel_zero") if mode in ("int8", "int4", "qlora") else ()
    for label in ("bias", "lora_kernel_b") + per_output + (("kernel",) if mode != "int4" else ()):
        if label in old1:
            expected = np.delete(old1[label], channels, axis=-1)
            np.testing.assert_array_equal(new1[label], expected, err_msg=label)
            assert new1[label].dtype == old1[label].dtype
    edited = {"kernel", "lora_kernel_a", "g_idx"}
    for label in edited - {"g_idx"} if mode != "int4" else {"lora_kernel_a"}:
        if label in old2:
            np.testing.assert_array_equal(new2[label], np.delete(old2[label], channels, axis=0),
                                          err_msg=label)
    for label in set(old2) - edited:  # bias, scales, histories, LoRA b
        np.testing.assert_array_equal(new2[label], old2[label], err_msg=label)
    for name in ("d1", "d2", "d3"):  # still quantized / with LoRA, trainable as before
        a, b = model.get_layer(name), pruned.get_layer(name)
        assert b.quantization_mode == a.quantization_mode
        assert getattr(b, "lora_enabled", False) == getattr(a, "lora_enabled", False)
        assert sorted((v.name, str(v.dtype), v.trainable) for v in b.weights) == \
               sorted((v.name, str(v.dtype), v.trainable) for v in a.weights)
    reference = zeroed_at_producer(model, "d1", channels)
    np.testing.assert_allclose(np.asarray(pruned(X)), np.asarray(reference(X)),
                               rtol=1e-5, atol=1e-6)
    for old, value in zip(model.weights, before):  # the caller's model is untouched
        np.testing.assert_array_equal(np.asarray(keras.ops.convert_to_numpy(old)), value)


def test_int4_by_blocks_refuses_an_input_deletion_that_changes_its_group_count():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), L.Dense(12, activation="relu", name="a"),
                             L.Dense(4, name="b")])
    with warnings.catch_warnings(), mock.patch("gc.collect", lambda *args: 0):
        warnings.simplefilter("ignore")
        model.quantize("int4", config=keras.quantizers.Int4QuantizationConfig(block_size=4))
    assert tuple(model.get_layer("b").kernel_scale.shape) == (3, 4)
    with pytest.raises(UnsupportedLayerError, match=r"layer 'b'.*blocks of 4.*3 groups.*2 groups"):
        surgery.delete_channels(model, "a", [0, 1, 2, 3, 4])
    pruned = surgery.delete_channels(model, "a", [0, 1])  # 10 rows: still 3 groups of 4
    reference = zeroed_at_producer(model, "a", [0, 1])
    np.testing.assert_allclose(np.asarray(pruned(X)), np.asarray(reference(X)),
                               rtol=1e-5, atol=1e-6)


def test_new_input_channels_of_a_quantized_kernel_are_refused_with_the_way_out():
    for mode in ("int8", "float8"):
        with pytest.raises(UnsupportedLayerError,
                           match=rf"layer 'd1'.*quantized '{mode}'.*then quantize"):
            surgery.set_input_channels(mlp(mode), 10, how="zeros")


def test_new_input_channels_of_a_lora_kernel_adapt_its_adapter_too():
    model = mlp("lora")
    gray = X[:, :1]
    new = surgery.set_input_channels(model, 1, how="sum")
    a_old = arrays(model.get_layer("d1"))["lora_kernel_a"]
    a_new = arrays(new.get_layer("d1"))["lora_kernel_a"]
    np.testing.assert_allclose(a_new, a_old.sum(axis=0, keepdims=True), rtol=1e-6)
    assert new.get_layer("d1").lora_enabled and not new.get_layer("d1")._kernel.trainable
    np.testing.assert_allclose(np.asarray(new(gray)), np.asarray(model(np.repeat(gray, 8, 1))),
                               rtol=1e-4, atol=1e-5)


def _untouched_equal(model, new, names):
    for name in names:
        a, b = model.get_layer(name), new.get_layer(name)
        assert layer_state(b) == layer_state(a), name
        for old, got in zip(a.weights, b.weights):
            np.testing.assert_array_equal(np.asarray(keras.ops.convert_to_numpy(got)),
                                          np.asarray(keras.ops.convert_to_numpy(old)))


SAME_OUTPUTS = {
    "delete_layer": lambda m: surgery.delete_layer(m, "drop"),
    "insert_layer": lambda m: surgery.insert_layer(m, "d1", L.Identity(name="extra")),
    "freeze": lambda m: surgery.freeze(m, ["d2"]),
    "rename": lambda m: surgery.rename_layers(m, mapping={"drop": "dropout_renamed"}),
    "add_outputs": lambda m: surgery.add_outputs(m, ["d1"]),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("operation", sorted(SAME_OUTPUTS))
def test_surgery_keeps_quantized_and_lora_layers_it_does_not_edit(mode, operation):
    model = mlp(mode)
    new = SAME_OUTPUTS[operation](model)
    _untouched_equal(model, new, ["d1", "d3"] + ([] if operation == "freeze" else ["d2"]))
    got = new(X)
    got = got[0] if isinstance(got, (list, tuple)) else got  # add_outputs appends
    np.testing.assert_array_equal(np.asarray(got), np.asarray(model(X)))


@pytest.mark.parametrize("mode", ["int8", "lora", "qlora"])
def test_freeze_and_unfreeze_by_pattern_keep_lora_base_kernels_frozen(mode):
    model = mlp(mode)
    frozen = surgery.freeze(model, ["d*"])
    assert frozen.trainable_weights == []
    thawed = surgery.unfreeze(frozen, ["d*"])
    # As Keras's own enable_lora left them: the adapters train, the base kernels do not.
    assert sorted(v.path for v in thawed.trainable_weights) == \
           sorted(v.path for v in model.trainable_weights)


@pytest.mark.parametrize("mode", ["int8", "lora"])
def test_replace_head_keeps_the_quantized_body(mode):
    model = mlp(mode)
    new = surgery.replace_head(model, "d2", L.Dense(3, name="head"))
    _untouched_equal(model, new, ["d1", "d2"])
    body = keras.Model(model.inputs, model.get_layer("d2").output)
    head = new.get_layer("head")
    expected = np.asarray(head(body(X)))
    np.testing.assert_array_equal(np.asarray(new(X)), expected)
