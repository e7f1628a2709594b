"""keras_rewrite.surgery.channels: delete_channels through every layer kind, delete/insert/replace layer.

Each delete_channels case checks (1) the pruned weights against `np.delete` of the right axis
of the original's arrays, (2) predictions against a copy of the original whose consumers of
the deleted channels have those input rows zeroed (and, for a recurrent layer, the deleted
units' recurrent rows, so they no longer feed the others), and (3) the original untouched.
"""
import keras
import numpy as np
import pytest
from keras import layers as L

import keras_rewrite as kr
from keras_rewrite import surgery
from keras_rewrite.surgery import (ChannelIndexError, LayerNotFoundError, SurgeryShapeError,
                                   TiedChannelsError, UnsupportedLayerError)

CHANNEL_LISTS = [[0], [-1], [1, 2]]


# ------------------------------------------------------------------------------- helpers


def find(model, name):
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            try:
                return find(layer, name)
            except KeyError:
                pass
    raise KeyError(name)


def weights_of(model, name):
    layer = find(model, name)
    return {v.name: np.asarray(v) for v in layer.weights}


def snapshot(model):
    out = {}
    stack = [model]
    while stack:
        m = stack.pop()
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                stack.append(layer)
            for v in layer.weights:
                out[(layer.name, v.path)] = np.asarray(v).copy()
    return out


def assert_untouched(model, before):
    after = snapshot(model)
    assert after.keys() == before.keys()
    for key in before:
        assert np.array_equal(after[key], before[key]), key


def inputs_for(model, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(2, *t.shape[1:]) for t in model.inputs]
    xs = [rng.standard_normal(s).astype("float32") for s in shapes]
    return xs[0] if len(xs) == 1 else xs


def predict(model, x):
    return [np.asarray(o) for o in keras.tree.flatten(model(x, training=False))]


def zeroed_copy(model, zero):
    """A copy of `model` (kr.rewrite) with `zero` = [(layer, weight, axis, indices)] zeroed."""
    ref = kr.rewrite(model)
    for name, label, axis, idx in zero:
        layer = find(ref, name)
        var = next(v for v in layer.weights if v.name == label)
        value = np.asarray(var).copy()
        sel = [slice(None)] * value.ndim
        sel[axis] = list(idx)
        value[tuple(sel)] = 0
        var.assign(value)
    return ref


def norm(channels, width):
    return sorted({c % width for c in channels})


def check(model, target, channels, width, cuts, *, compare=True):
    """`cuts`: (layer, weight, axis, index function, zero in the reference?).

    The index function maps the deleted channels (normalized) to indices on that axis.
    """
    before = snapshot(model)
    d = norm(channels, width)
    pruned = surgery.delete_channels(model, target, channels)
    assert [l.name for l in pruned.layers] == [l.name for l in model.layers]
    assert [type(l) for l in pruned.layers] == [type(l) for l in model.layers]
    zero, expected = [], {}
    for name, label, axis, fn, zeroed in cuts:  # cuts of one weight compose, in order
        idx = fn(d)
        value = expected.get((name, label), weights_of(model, name)[label])
        expected[(name, label)] = np.delete(value, idx, axis=axis)
        if zeroed:
            zero.append((name, label, axis, idx))
    for (name, label), value in expected.items():
        got = weights_of(pruned, name)[label]
        assert got.shape == value.shape, (name, label)
        np.testing.assert_array_equal(got, value, err_msg=f"{name}/{label}")
    if compare:
        x = inputs_for(model)
        for a, b in zip(predict(pruned, x), predict(zeroed_copy(model, zero), x)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert_untouched(model, before)
    return pruned


same = lambda d: d  # noqa: E731


def out_cuts(name, kernel_axis=-1, bias=True):
    cuts = [(name, "kernel", kernel_axis, same, False)]
    return cuts + ([(name, "bias", 0, same, False)] if bias else [])


def bn_cuts(name):
    return [(name, w, 0, same, False) for w in ("gamma", "beta", "moving_mean",
                                                  "moving_variance")]


def trained_bn(model):
    """Give BatchNormalization layers non-trivial statistics."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            for v in layer.weights:
                v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
    return model


# ---------------------------------------------------------------- Dense and Conv, both formats


@pytest.mark.parametrize("channels", CHANNEL_LISTS)
def test_dense_through_bn_activation_dropout_into_dense(channels):
    x = keras.Input((5,))
    h = L.Dense(6, name="t")(x)
    h = L.BatchNormalization(name="bn")(h)
    h = L.ReLU()(h)
    h = L.Dropout(0.3)(h)
    h = L.GaussianNoise(0.1)(h)
    model = trained_bn(keras.Model(x, L.Dense(3, name="c")(h)))
    pruned = check(model, "t", channels, 6, out_cuts("t") + bn_cuts("bn")
                   + [("c", "kernel", 0, same, True)])
    assert find(pruned, "t").units == 6 - len(norm(channels, 6))


CONV = {1: (L.Conv1D, L.MaxPooling1D, L.ZeroPadding1D, L.Cropping1D, L.UpSampling1D,
            L.SpatialDropout1D, (6,)),
        2: (L.Conv2D, L.AveragePooling2D, L.ZeroPadding2D, L.Cropping2D, L.UpSampling2D,
            L.SpatialDropout2D, (6, 6)),
        3: (L.Conv3D, L.MaxPooling3D, L.ZeroPadding3D, L.Cropping3D, L.UpSampling3D,
            L.SpatialDropout3D, (4, 4, 4))}


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("channels", CHANNEL_LISTS)
def test_conv_through_bn_pooling_padding_cropping_upsampling_into_conv(rank, fmt, channels):
    conv, pool, pad, crop, up, sdrop, space = CONV[rank]
    shape = (*space, 2) if fmt == "channels_last" else (2, *space)
    x = keras.Input(shape)
    kw = dict(data_format=fmt)
    h = conv(5, 1, name="t", **kw)(x)
    h = L.BatchNormalization(axis=-1 if fmt == "channels_last" else 1, name="bn")(h)
    h = L.Activation("relu")(h)
    h = pool(2, **kw)(h)
    h = pad(1, **kw)(h)
    if rank > 1:
        h = up(2, **kw)(crop(1, **kw)(h))
    elif fmt == "channels_last":  # Cropping1D and UpSampling1D have no data_format
        h = up(2)(crop(1)(h))
    if rank > 1:
        h = sdrop(0.2, **kw)(h)
    elif fmt == "channels_last":
        h = sdrop(0.2)(h)
    model = trained_bn(keras.Model(x, conv(3, 1, name="c", **kw)(h)))
    check(model, "t", channels, 5, out_cuts("t") + bn_cuts("bn")
          + [("c", "kernel", -2, same, True)])


def flat_rows(shape, axis):
    """Rows of the Dense after Flatten for channels `d` on `axis` of a (no batch) `shape`."""
    def fn(d):
        mask = np.zeros(shape, bool)
        sel = [slice(None)] * len(shape)
        sel[axis] = d
        mask[tuple(sel)] = True
        return list(np.flatnonzero(mask.reshape(-1)))
    return fn


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("channels", CHANNEL_LISTS)
def test_conv_into_flatten_deletes_the_right_rows_of_the_next_dense(fmt, channels):
    x = keras.Input((5, 4, 2) if fmt == "channels_last" else (2, 5, 4))
    h = L.Conv2D(4, 1, data_format=fmt, name="t")(x)
    h = L.Flatten(data_format="channels_last")(h)  # flattens the tensor as it is laid out
    model = keras.Model(x, L.Dense(3, name="c")(h))
    shape, axis = ((5, 4, 4), 2) if fmt == "channels_last" else ((4, 5, 4), 0)
    check(model, "t", channels, 4, out_cuts("t") + [("c", "kernel", 0, flat_rows(shape, axis),
                                                      True)])
    # the rows of c for channel k, laid out (H, W, C): h*W*C + w*C + k
    if fmt == "channels_last":
        assert flat_rows(shape, axis)([1])[:3] == [1, 5, 9]
    else:  # (C, H, W): k*H*W + h*W + w
        assert flat_rows(shape, axis)([1])[:3] == [20, 21, 22]


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_flatten_with_channels_first_data_format(fmt):
    x = keras.Input((2, 3, 3))
    h = L.Conv2D(4, 1, data_format="channels_first", name="t")(x)
    h = L.Flatten(data_format=fmt)(h)
    model = keras.Model(x, L.Dense(2, name="c")(h))
    # Flatten(channels_first) moves channels last before flattening: rows are (H, W, C).
    shape, axis = ((3, 3, 4), 2) if fmt == "channels_first" else ((4, 3, 3), 0)
    check(model, "t", [1, 3], 4, out_cuts("t") + [("c", "kernel", 0, flat_rows(shape, axis),
                                                    True)])


@pytest.mark.parametrize("pool", [L.GlobalAveragePooling2D, L.GlobalMaxPooling2D])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_into_dense(pool, fmt, keepdims):
    x = keras.Input((4, 4, 3) if fmt == "channels_last" else (3, 4, 4))
    h = L.Conv2D(5, 3, data_format=fmt, name="t")(x)
    h = pool(data_format=fmt, keepdims=keepdims)(h)
    if keepdims:
        h = L.Conv2D(2, 1, data_format=fmt, name="c")(h)
        cut = ("c", "kernel", -2, same, True)
    else:
        h = L.Dense(2, name="c")(h)
        cut = ("c", "kernel", 0, same, True)
    check(keras.Model(x, h), "t", [0, 3], 5, out_cuts("t") + [cut])


@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("channels", CHANNEL_LISTS)
def test_concatenate_shifts_indices_by_the_widths_before(first, channels):
    x = keras.Input((4, 4, 2))
    t = L.Conv2D(5, 1, name="t")(x)
    o = L.Conv2D(3, 1, name="o")(x)
    h = L.Concatenate(name="cat")([t, o] if first else [o, t])
    model = keras.Model(x, L.Conv2D(2, 1, name="c")(h))
    shift = 0 if first else 3
    check(model, "t", channels, 5, out_cuts("t")
          + [("c", "kernel", -2, lambda d: [shift + c for c in d], True)])


def test_concatenate_on_channels_first():
    x = keras.Input((2, 4, 4))
    t = L.Conv2D(5, 1, data_format="channels_first", name="t")(x)
    o = L.Conv2D(3, 1, data_format="channels_first", name="o")(x)
    h = L.Concatenate(axis=1)([o, t])
    model = keras.Model(x, L.Conv2D(2, 1, data_format="channels_first", name="c")(h))
    check(model, "t", [0, 4], 5, out_cuts("t") + [("c", "kernel", -2,
                                                     lambda d: [3 + c for c in d], True)])


# --------------------------------------------------------------------- residual merges


@pytest.mark.parametrize("merge", [L.Add, L.Multiply, L.Average, L.Maximum, L.Subtract])
@pytest.mark.parametrize("channels", CHANNEL_LISTS)
def test_residual_merge_deletes_the_same_channels_in_every_branch(merge, channels):
    x = keras.Input((4, 4, 2))
    a = L.Conv2D(5, 1, name="a")(x)
    b = L.BatchNormalization(name="bn")(a)
    b = L.ReLU()(b)
    t = L.Conv2D(5, 3, padding="same", name="t")(b)
    h = merge(name="merge")([b, t])
    model = trained_bn(keras.Model(x, L.Conv2D(2, 1, name="c")(h)))
    # 'a' makes the other branch's channels: it loses them too, and 't' loses its inputs.
    check(model, "t", channels, 5, out_cuts("t") + out_cuts("a") + bn_cuts("bn")
          + [("t", "kernel", -2, same, True), ("c", "kernel", -2, same, True)])


def test_merge_chains_are_followed_recursively():
    x = keras.Input((6,))
    a = L.Dense(4, name="a")(x)
    b = L.Dense(4, name="b")(x)
    s = L.Add(name="s1")([a, b])
    t = L.Dense(4, name="t")(s)
    s2 = L.Add(name="s2")([s, t])
    model = keras.Model(x, L.Dense(2, name="c")(s2))
    check(model, "t", [1], 4, out_cuts("t") + out_cuts("a") + out_cuts("b")
          + [("t", "kernel", 0, same, True), ("c", "kernel", 0, same, True)])


def test_merge_with_a_model_input_is_refused_naming_the_input():
    x = keras.Input((4,), name="x")
    t = L.Dense(4, name="t")(x)
    model = keras.Model(x, L.Add(name="add")([x, t]))
    with pytest.raises(TiedChannelsError, match=r"channels \[1\] deleted at layer 'add'.*'x' "
                                                 r"is an input of model"):
        surgery.delete_channels(model, "t", [1])


def test_merge_with_a_layer_that_owns_no_channels_is_refused():
    x = keras.Input((4, 4, 6))
    p = L.Reshape((4, 4, 6), name="reshape")(x)
    t = L.Conv2D(6, 1, name="t")(x)
    model = keras.Model(x, L.Add(name="add")([p, t]))
    with pytest.raises(TiedChannelsError, match=r"'reshape' \(Reshape\) does not own channels"):
        surgery.delete_channels(model, "t", [0])


# ------------------------------------------------------------ Separable, Transpose, Depthwise


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("sep", [L.SeparableConv1D, L.SeparableConv2D])
@pytest.mark.parametrize("channels", CHANNEL_LISTS)
def test_separable_conv_pointwise_output_and_as_consumer(sep, fmt, channels):
    space = (6,) if sep is L.SeparableConv1D else (6, 6)
    x = keras.Input((*space, 3) if fmt == "channels_last" else (3, *space))
    h = sep(5, 3, depth_multiplier=2, data_format=fmt, name="t")(x)
    h = sep(2, 3, depth_multiplier=2, data_format=fmt, name="c")(h)
    model = keras.Model(x, h)
    check(model, "t", channels, 5, [
        ("t", "pointwise_kernel", -1, same, False), ("t", "bias", 0, same, False),
        ("c", "depthwise_kernel", -2, same, True),
        ("c", "pointwise_kernel", -2, lambda d: [2 * c + k for c in d for k in range(2)],
         True)])


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("channels", CHANNEL_LISTS)
def test_conv2d_transpose_kernel_layout_out_in(fmt, channels):
    x = keras.Input((4, 4, 3) if fmt == "channels_last" else (3, 4, 4))
    h = L.Conv2DTranspose(5, 3, data_format=fmt, name="t")(x)  # kernel (kh, kw, out, in)
    h = L.Conv2DTranspose(2, 3, data_format=fmt, name="c")(h)
    model = keras.Model(x, h)
    check(model, "t", channels, 5, out_cuts("t", kernel_axis=-2)
          + [("c", "kernel", -1, same, True)])


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("channels", CHANNEL_LISTS)
def test_depthwise_downstream_loses_the_channels_and_carries_them_on(fmt, channels):
    x = keras.Input((6, 6, 2) if fmt == "channels_last" else (2, 6, 6))
    h = L.Conv2D(4, 1, data_format=fmt, name="t")(x)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, data_format=fmt, name="dw")(h)
    model = keras.Model(x, L.Conv2D(2, 1, data_format=fmt, name="c")(h))
    copies = lambda d: [2 * c + k for c in d for k in range(2)]  # noqa: E731
    check(model, "t", channels, 4, out_cuts("t") + [
        ("dw", "kernel", -2, same, False), ("dw", "bias", 0, copies, False),
        ("c", "kernel", -2, copies, True)])


def test_depthwise_conv1d_downstream():
    x = keras.Input((6, 2))
    h = L.Conv1D(4, 1, name="t")(x)
    h = L.DepthwiseConv1D(3, name="dw")(h)
    model = keras.Model(x, L.Dense(2, name="c")(h))
    check(model, "t", [0, 3], 4, out_cuts("t") + [("dw", "kernel", -2, same, False),
                                                   ("dw", "bias", 0, same, False),
                                                   ("c", "kernel", 0, same, True)])


@pytest.mark.parametrize("channels", CHANNEL_LISTS)
def test_deleting_depthwise_channels_deletes_its_input_channels_upstream(channels):
    x = keras.Input((6, 6, 2))
    h = L.Conv2D(4, 1, name="up")(x)
    h = L.BatchNormalization(name="bn")(h)
    h = L.DepthwiseConv2D(3, name="t")(h)
    model = trained_bn(keras.Model(x, L.Conv2D(2, 1, name="c")(h)))
    check(model, "t", channels, 4, out_cuts("up") + bn_cuts("bn")
          + [("t", "kernel", -2, same, False), ("t", "bias", 0, same, False),
             ("c", "kernel", -2, same, True)])


def test_depthwise_with_a_multiplier_refuses_part_of_an_input_channel():
    x = keras.Input((6, 6, 2))
    h = L.Conv2D(3, 1, name="up")(x)
    model = keras.Model(x, L.DepthwiseConv2D(3, depth_multiplier=2, name="t")(h))
    with pytest.raises(ChannelIndexError, match=r"layer 't'.*input channel 0 .*channels "
                                                r"\[0, 1\]"):
        surgery.delete_channels(model, "t", [0])
    pruned = surgery.delete_channels(model, "t", [2, 3])  # input channel 1, both copies
    assert find(pruned, "up").filters == 2


def test_depthwise_on_a_model_input_is_refused():
    x = keras.Input((6, 6, 2), name="img")
    model = keras.Model(x, L.DepthwiseConv2D(3, name="t")(x))
    with pytest.raises(TiedChannelsError, match="'img' is an input of model"):
        surgery.delete_channels(model, "t", [0])


# ------------------------------------------------------------------------------ recurrent


GATES = {L.LSTM: 4, L.GRU: 3, L.SimpleRNN: 1}


def gate_cols(rnn, units):
    return lambda d: [g * units + c for g in range(GATES[rnn]) for c in d]


@pytest.mark.parametrize("rnn", [L.LSTM, L.GRU, L.SimpleRNN])
@pytest.mark.parametrize("channels", CHANNEL_LISTS)
def test_recurrent_units_in_every_gate_block_and_into_the_next_rnn(rnn, channels):
    x = keras.Input((5, 3))
    h = rnn(4, return_sequences=True, name="t")(x)
    h = rnn(2, name="c")(h)
    model = keras.Model(x, L.Dense(2, name="d")(h))
    cols = gate_cols(rnn, 4)
    check(model, "t", channels, 4, [
        ("t", "kernel", -1, cols, False), ("t", "recurrent_kernel", -1, cols, False),
        ("t", "bias", -1, cols, False),
        ("t", "recurrent_kernel", 0, same, True),  # deleted units no longer feed the others
        ("c", "kernel", 0, same, True)])


def test_gru_reset_after_bias_is_two_rows():
    x = keras.Input((5, 3))
    h = L.GRU(4, reset_after=True, name="t")(x)
    model = keras.Model(x, L.Dense(2, name="c")(h))
    assert find(model, "t").weights[2].shape == (2, 12)
    cols = gate_cols(L.GRU, 4)
    check(model, "t", [1], 4, [("t", "bias", -1, cols, False), ("t", "kernel", -1, cols, False),
                               ("t", "recurrent_kernel", -1, cols, False),
                               ("t", "recurrent_kernel", 0, same, True),
                               ("c", "kernel", 0, same, True)])


def test_dense_on_sequences_into_lstm():
    x = keras.Input((5, 3))
    h = L.Dense(4, name="t")(x)
    model = keras.Model(x, L.LSTM(2, name="c")(h))
    check(model, "t", [0, 2], 4, out_cuts("t") + [("c", "kernel", 0, same, True)])


# --------------------------------------------------------------------- LayerNormalization


def test_layer_normalization_over_the_channel_axis():
    x = keras.Input((4, 6))
    h = L.Dense(6, name="t")(x)
    h = L.LayerNormalization(name="ln")(h)
    model = keras.Model(x, L.Dense(2, name="c")(h))
    # The statistics are over the remaining channels, so outputs change: weights only.
    check(model, "t", [1, 2], 6, out_cuts("t") + [("ln", "gamma", 0, same, False),
                                                   ("ln", "beta", 0, same, False),
                                                   ("c", "kernel", 0, same, False)],
          compare=False)


def test_layer_normalization_over_other_axes_is_refused():
    x = keras.Input((4, 6))
    h = L.Dense(6, name="t")(x)
    model = keras.Model(x, L.LayerNormalization(axis=[1, 2], name="ln")(h))
    with pytest.raises(UnsupportedLayerError, match=r"'ln' \(LayerNormalization\) works over "
                                                    r"axes \[1, 2\]"):
        surgery.delete_channels(model, "t", [0])


# ------------------------------------------------------------------- nested and shared


def test_inside_a_nested_model_and_out_of_it():
    inner_in = keras.Input((5,))
    inner = keras.Model(inner_in, L.ReLU()(L.Dense(4, name="t")(inner_in)), name="inner")
    x = keras.Input((5,))
    model = keras.Model(x, L.Dense(2, name="c")(inner(x)))
    check(model, "t", [0, -1], 4, out_cuts("t") + [("c", "kernel", 0, same, True)])


def test_into_a_nested_model():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, L.Dense(2, name="c")(L.ReLU()(inner_in)), name="inner")
    x = keras.Input((5,))
    model = keras.Model(x, inner(L.Dense(4, name="t")(x)))
    check(model, "t", [2], 4, out_cuts("t") + [("c", "kernel", 0, same, True)])


def test_a_shared_layer_loses_the_channels_on_every_call():
    x1, x2 = keras.Input((5,)), keras.Input((5,))
    t = L.Dense(4, name="t")
    model = keras.Model([x1, x2], [L.Dense(2, name="c1")(t(x1)), L.Dense(2, name="c2")(t(x2))])
    check(model, "t", [1, 2], 4, out_cuts("t") + [("c1", "kernel", 0, same, True),
                                                   ("c2", "kernel", 0, same, True)])


def test_a_shared_consumer_fed_pruned_and_unpruned_tensors_is_refused():
    x = keras.Input((5,))
    c = L.Dense(2, name="c")
    a, b = L.Dense(4, name="t")(x), L.Dense(4, name="other")(x)
    model = keras.Model(x, [c(a), c(b)])
    with pytest.raises(TiedChannelsError, match=r"layer 'c' \(Dense\) is shared"):
        surgery.delete_channels(model, "t", [0])


def test_deleting_channels_of_a_model_output_changes_its_shape():
    x = keras.Input((5,))
    model = keras.Model(x, L.Dense(4, name="t")(x))
    pruned = check(model, "t", [0], 4, out_cuts("t"), compare=False)
    assert pruned.output.shape == (None, 3)


# -------------------------------------------------------------------------------- errors


def small():
    x = keras.Input((6, 6, 2), name="x")
    h = L.Conv2D(4, 3, name="conv")(x)
    h = L.ReLU(name="relu")(h)
    h = L.Flatten(name="flat")(h)
    return keras.Model(x, L.Dense(2, name="dense")(h))


@pytest.mark.parametrize("channels,error,match", [
    ([4], ChannelIndexError, r"layer 'conv' \(Conv2D\) has 4 channels .*channel index 4 is out "
                             r"of range"),
    ([0, -5], ChannelIndexError, r"layer 'conv'.*channel index -5 is out of range"),
    ([0, 1, 2, 3], ChannelIndexError, r"layer 'conv' \(Conv2D\): cannot delete every one of "
                                      r"its 4 channels"),
    ([0, 1, -1, 2, -2], ChannelIndexError, r"cannot delete every one"),
    ([], ChannelIndexError, r"layer 'conv': expected at least one channel"),
    ([1.0], ChannelIndexError, r"layer 'conv': channel 1.0 is not an integer"),
])
def test_impossible_channel_requests_name_layer_and_index(channels, error, match):
    model = small()
    before = snapshot(model)
    with pytest.raises(error, match=match):
        surgery.delete_channels(model, "conv", channels)
    assert_untouched(model, before)


def test_duplicates_are_removed_and_negatives_count_from_the_end():
    model = small()
    a = surgery.delete_channels(model, "conv", [3, -1, 3])
    assert find(a, "conv").filters == 3
    np.testing.assert_array_equal(np.asarray(find(a, "conv").kernel),
                                  np.asarray(find(model, "conv").kernel)[..., :3])


def test_a_layer_kind_it_cannot_act_on_and_an_unknown_layer():
    model = small()
    with pytest.raises(UnsupportedLayerError, match=r"cannot delete channels of layer 'relu' "
                                                    r"\(ReLU\)"):
        surgery.delete_channels(model, "relu", [0])
    with pytest.raises(LayerNotFoundError, match="has no layer 'nope'"):
        surgery.delete_channels(model, "nope", [0])


def test_a_layer_it_cannot_carry_channels_through_is_named():
    x = keras.Input((4, 4, 2))
    h = L.Conv2D(4, 1, name="conv")(x)
    h = L.Reshape((16, 4), name="reshape")(h)
    model = keras.Model(x, h)
    with pytest.raises(UnsupportedLayerError, match=r"channels \[1\] through layer 'reshape' "
                                                    r"\(Reshape\)"):
        surgery.delete_channels(model, "conv", [1])


def test_layer_given_as_object_and_as_a_pass():
    model = small()
    a = surgery.delete_channels(model, model.get_layer("conv"), [1])
    b = kr.rewrite(model, [surgery.DeleteChannels("conv", [1])])
    x = inputs_for(model)
    np.testing.assert_array_equal(predict(a, x)[0], predict(b, x)[0])
    result = kr.rewrite_with_report(model, [surgery.DeleteChannels("conv", [1])])
    assert "kernel" in result.report.layers["conv"].transformed
    assert "kernel" in result.report.layers["dense"].transformed


# --------------------------------------------------------- delete / insert / replace layer


def branched():
    x = keras.Input((8,), name="x")
    a = L.Dense(6, name="a")(x)
    d = L.Dropout(0.5, name="drop")(a)
    left = L.Dense(4, name="left")(d)
    right = L.Dense(4, name="right")(d)
    s = L.Add(name="add")([left, right])
    return keras.Model(x, L.Dense(2, name="out")(s))


def test_delete_layer_reconnects_consumers_and_keeps_weights():
    model = branched()
    before = snapshot(model)
    new = surgery.delete_layer(model, "drop")
    assert [l.name for l in new.layers] == ["x", "a", "left", "right", "add", "out"]
    x = inputs_for(model)
    np.testing.assert_allclose(predict(new, x)[0], predict(model, x)[0], rtol=1e-6)
    for name in ("a", "left", "right", "out"):
        for k, v in weights_of(model, name).items():
            np.testing.assert_array_equal(weights_of(new, name)[k], v)
    assert_untouched(model, before)


def test_delete_layer_refuses_when_a_consumer_cannot_take_the_shape():
    model = branched()
    with pytest.raises(SurgeryShapeError, match=r"deleting layer 'a': consumer 'drop:?\d*'|"
                                                r"deleting layer 'a': consumer 'left' \(Dense\)"):
        surgery.delete_layer(surgery.delete_layer(model, "drop"), "a")
    with pytest.raises(UnsupportedLayerError, match=r"cannot delete layer 'add' \(Add\): "
                                                    r"expected one input"):
        surgery.delete_layer(model, "add")


def test_insert_layer_after_a_branch_point_feeds_every_consumer():
    model = branched()
    before = snapshot(model)
    new = surgery.insert_layer(model, "a", L.ReLU(name="act"))
    assert [l.name for l in new.layers] == ["x", "a", "act", "drop", "left", "right", "add",
                                            "out"]
    assert find(new, "drop").input.name == find(new, "act").output.name
    x = inputs_for(model)
    ref = zeroed_copy(model, [])
    relu_a = np.maximum(predict(keras.Model(ref.input, ref.get_layer("a").output), x)[0], 0)
    tail = keras.Model(ref.get_layer("drop").input, ref.output)
    np.testing.assert_allclose(predict(new, x)[0], predict(tail, relu_a)[0], rtol=1e-5)
    assert_untouched(model, before)


def test_insert_layer_that_changes_the_shape_is_checked_against_the_consumers():
    model = branched()
    with pytest.raises(SurgeryShapeError, match=r"inserting 'wide' after layer 'drop': consumer "
                                                r"'(left|right)' \(Dense\)"):
        surgery.insert_layer(model, "drop", L.Dense(7, name="wide"))
    # A shape-changing layer before the model output is fine: the output changes.
    new = surgery.insert_layer(model, "out", L.Dense(3, name="head"))
    assert new.output.shape == (None, 3)


def test_insert_layer_with_a_taken_name_gets_a_fresh_one():
    new = surgery.insert_layer(branched(), "a", L.ReLU(name="left"))
    assert "left_1" in [l.name for l in new.layers]


def test_replace_layer_carries_weights_where_names_and_shapes_fit():
    model = branched()
    before = snapshot(model)
    new = surgery.replace_layer(model, "left", L.Dense(4, activation="relu", name="left"))
    assert find(new, "left").get_config()["activation"] == "relu"
    for k, v in weights_of(model, "left").items():
        np.testing.assert_array_equal(weights_of(new, "left")[k], v)
    x = inputs_for(model)
    ref = zeroed_copy(model, [])
    ref.get_layer("left").activation = keras.activations.relu
    np.testing.assert_allclose(predict(new, x)[0], predict(ref, x)[0], rtol=1e-5)
    swapped = surgery.replace_layer(model, "drop", L.GaussianNoise(0.1, name="noise"))
    assert [type(l).__name__ for l in swapped.layers][2] == "GaussianNoise"
    assert_untouched(model, before)


def test_replace_layer_with_other_shapes_is_refused_naming_the_consumer():
    model = branched()
    with pytest.raises(SurgeryShapeError, match=r"replacing layer 'left' by 'left2': consumer "
                                                r"'add' \(Add\)"):
        surgery.replace_layer(model, "left", L.Dense(5, name="left2"))
    new = surgery.replace_layer(model, "a", L.Dense(6, use_bias=False, name="a"))
    np.testing.assert_array_equal(weights_of(new, "a")["kernel"], weights_of(model, "a")["kernel"])


def test_layer_operations_as_passes():
    model = branched()
    new = kr.rewrite(model, [surgery.DeleteLayer("drop"),
                             surgery.InsertLayer("add", L.ReLU(name="act")),
                             surgery.ReplaceLayer("act", L.LeakyReLU(name="act"))])
    assert [l.name for l in new.layers] == ["x", "a", "left", "right", "add", "act", "out"]
    assert isinstance(find(new, "act"), L.LeakyReLU)


# ----------------------------------------------------------------- choosing the channels


def test_l1_norm_channels_picks_the_smallest_filters():
    model = small()
    k = np.asarray(find(model, "conv").kernel).copy()
    k[..., 2] *= 0.001
    k[..., 0] *= 0.01
    find(model, "conv").kernel.assign(k)
    assert surgery.l1_norm_channels(model, "conv", 2) == [0, 2]
    assert surgery.l1_norm_channels(model, "conv", 0.5) == [0, 2]
    expected = np.argsort(np.abs(k).sum(axis=(0, 1, 2)))[:1]
    assert surgery.l1_norm_channels(model, "conv", 1) == list(expected)


def test_l1_norm_channels_for_rnn_and_transpose():
    x = keras.Input((5, 3))
    model = keras.Model(x, L.LSTM(4, name="t")(x))
    lstm = find(model, "t")
    both = np.concatenate([np.asarray(lstm.weights[0]), np.asarray(lstm.weights[1])])
    norms = np.abs(both).reshape(-1, 4, 4).sum(axis=(0, 1))
    assert surgery.l1_norm_channels(model, "t", 2) == sorted(np.argsort(norms)[:2].tolist())
    x = keras.Input((4, 4, 3))
    model = keras.Model(x, L.Conv2DTranspose(5, 3, name="t")(x))
    k = np.asarray(find(model, "t").kernel)
    norms = np.abs(k).sum(axis=(0, 1, 3))
    assert surgery.l1_norm_channels(model, "t", 2) == sorted(np.argsort(norms)[:2].tolist())


def test_apoz_channels_picks_the_most_often_zero_channels():
    x = keras.Input((4,))
    model = keras.Model(x, L.Dense(3, activation="relu", name="t")(x))
    layer = find(model, "t")
    layer.kernel.assign(np.array([[1, -1, 0.5]] * 4, "float32"))
    layer.bias.assign(np.array([0, -10, 0], "float32"))
    batch = np.abs(np.random.default_rng(0).standard_normal((8, 4))).astype("float32")
    assert surgery.apoz_channels(model, "t", batch, 1) == [1]
    # measured after a separate activation layer too
    x = keras.Input((4,))
    h = L.Dense(3, name="t")(x)
    model = keras.Model(x, L.ReLU(name="relu")(h))
    find(model, "t").kernel.assign(np.array([[1, -1, 0.5]] * 4, "float32"))
    assert surgery.apoz_channels(model, "t", batch, 1) == [1]
    with pytest.raises(ChannelIndexError, match="layer 't'"):
        surgery.apoz_channels(model, "t", batch, 3)


def test_a_nested_model_called_twice_on_pruned_channels_is_refused():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, L.Dense(2, name="c")(inner_in), name="inner")
    x = keras.Input((5,))
    t = L.Dense(4, name="t")(x)
    model = keras.Model(x, [inner(t), inner(L.Dense(4, name="o")(x))])
    with pytest.raises(TiedChannelsError, match="nested model 'inner' is called 2 times"):
        surgery.delete_channels(model, "t", [0])


def test_delete_and_replace_inside_a_nested_model():
    inner_in = keras.Input((4,))
    h = L.Dropout(0.2, name="drop")(L.Dense(4, name="d")(inner_in))
    inner = keras.Model(inner_in, L.Dense(2, name="c")(h), name="inner")
    x = keras.Input((4,))
    model = keras.Model(x, inner(x))
    before = snapshot(model)
    new = surgery.delete_layer(model, "drop")
    assert "drop" not in [l.name for l in find(new, "inner").layers]
    new = surgery.replace_layer(model, "drop", L.Activation("linear", name="lin"))
    assert "lin" in [l.name for l in find(new, "inner").layers]
    xs = inputs_for(model)
    np.testing.assert_allclose(predict(new, xs)[0], predict(model, xs)[0], rtol=1e-6)
    assert_untouched(model, before)
