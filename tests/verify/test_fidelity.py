"""Real-world fidelity of the round trip: structures, Functional subclasses, layers whose config
does not round-trip, and layer state beyond variables (adapted preprocessing layers)."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import keras_rewrite as kr
from keras_rewrite.rebuild.rewritten_model import SavesRewrite
from helpers import assert_identical_copy, assert_same_predictions


def test_dict_outputs_keep_their_keys_order_and_values():
    x = keras.Input((3,), name="x")
    outputs = {"b": layers.Dense(1, name="db")(x), "a": layers.Dense(4, name="da")(x)}
    model = keras.Model({"x": x}, outputs)
    new = kr.rewrite(model)
    assert list(new.output) == ["b", "a"] and list(new.input) == ["x"]
    data = {"x": np.ones((2, 3), "float32")}
    want, got = model.predict(data, verbose=0), new.predict(data, verbose=0)
    assert list(got) == ["b", "a"]
    for key in want:
        assert np.array_equal(want[key], got[key])


def test_nested_list_and_dict_outputs_keep_their_structure():
    x = keras.Input((3,))
    a, b, c = (layers.Dense(n, name=f"d{n}")(x) for n in (1, 2, 3))
    model = keras.Model(x, [c, {"z": a, "y": b}])
    new = kr.rewrite(model)
    data = np.ones((2, 3), "float32")
    want, got = model.predict(data, verbose=0), new.predict(data, verbose=0)
    assert list(got[1]) == ["z", "y"]
    assert np.array_equal(want[0], got[0]) and np.array_equal(want[1]["y"], got[1]["y"])


@keras.saving.register_keras_serializable("test_fidelity")
class TinyBackbone(keras.Model):
    """A Functional subclass in KerasHub's style: config = constructor arguments."""

    def __init__(self, width=4, **kwargs):
        self.hidden = layers.Dense(width, activation="relu", name="hidden")
        self.heads = [layers.Dense(1, name="head_a"), layers.Dense(2, name="head_b")]
        inputs = keras.Input((3,), name="x")
        h = self.hidden(inputs)
        super().__init__(inputs, {"a": self.heads[0](h), "b": self.heads[1](h)}, **kwargs)
        self.width = width

    def get_config(self):
        return {"width": self.width, "name": self.name, "trainable": self.trainable}


def test_a_functional_subclass_keeps_its_class_and_its_attributes_point_into_the_copy():
    model = TinyBackbone(width=5, name="tiny")
    result = kr.rewrite_with_report(model)
    new = result.model
    assert type(new) is TinyBackbone and new.width == 5 and new.name == "tiny"
    assert new.hidden is new.get_layer("hidden") and new.hidden is not model.hidden
    assert [h.name for h in new.heads] == ["head_a", "head_b"]
    assert new.heads[1] is new.get_layer("head_b")
    assert new.get_config() == model.get_config()
    assert_identical_copy(model, new, {"x": np.ones((2, 3), "float32")})
    assert result.report.notes == []


def test_a_changed_constructor_config_subclass_stays_its_class_and_saves_the_rewrite(tmp_path):
    model = TinyBackbone(width=5, name="tiny")
    result = kr.rewrite_with_report(model, [kr.passes.L2Regularization(0.01)])
    new = result.model
    assert isinstance(new, TinyBackbone) and type(new).__name__ == "TinyBackbone"
    assert isinstance(new, SavesRewrite)
    assert new.hidden is new.get_layer("hidden") and new.width == 5
    assert "saves as TinyBackbone's constructor arguments plus the passes" in result.report.notes[-1]
    assert new.get_config()["recipe"]["model"]["class_name"] == "TinyBackbone"
    assert keras.saving.serialize_keras_object(new)["registered_name"] == \
        "keras_rewrite>RewrittenFunctional"


@keras.saving.register_keras_serializable("test_fidelity")
class BlockWithoutConfig(layers.Layer):
    """As keras.io examples print it: sub-layers from __init__ arguments, no get_config."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.make_parts(dim, hidden)

    def make_parts(self, dim, hidden):
        self.ffn = keras.Sequential([layers.Dense(hidden, activation="relu"), layers.Dense(dim)])
        self.norm = layers.LayerNormalization()
        self.drop = layers.Dropout(0.1)

    def call(self, x, training=False):
        return self.norm(x + self.drop(self.ffn(x), training=training))


@keras.saving.register_keras_serializable("test_fidelity")
class ForgetfulConfig(layers.Layer):
    """get_config forgets `units`: from_config builds a layer of the default width."""

    def __init__(self, units=2, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = layers.Dense(units)

    def call(self, x):
        return self.inner(x)

    def get_config(self):
        return {"name": self.name}


@keras.saving.register_keras_serializable("test_fidelity")
class BlockWithConfig(BlockWithoutConfig):
    """The same block as keras.io's examples that save: get_config lists __init__'s arguments."""

    def __init__(self, dim, hidden, **kwargs):
        layers.Layer.__init__(self, **kwargs)
        self.make_parts(dim, hidden)
        self.dim, self.hidden = dim, hidden

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "hidden": self.hidden}


def _block_model(block=BlockWithoutConfig):
    x = keras.Input((5, 8))
    return keras.Model(x, layers.GlobalAveragePooling1D()(block(8, 16)(x)))


def test_a_layer_without_get_config_is_copied_from_the_object_and_trains_independently():
    model = _block_model()
    result = kr.rewrite_with_report(model)
    new = result.model
    block = model.layers[1]
    assert result.report.layers[block.name].how.startswith("object copy: from_config failed")
    x = np.random.default_rng(0).random((4, 5, 8)).astype("float32")
    assert_same_predictions(model, new, x)
    before = [w.numpy().copy() for w in model.weights]
    new.compile(keras.optimizers.SGD(0.5), "mse")
    new.fit(x, np.ones((4, 8), "float32"), epochs=2, verbose=0)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, model.weights))
    assert not all(np.array_equal(b, w.numpy()) for b, w in zip(before, new.weights))


def test_a_layer_whose_config_builds_something_else_is_detected_and_copied():
    x = keras.Input((3,))
    layer = ForgetfulConfig(units=4, name="forgetful")
    model = keras.Model(x, layer(x))
    result = kr.rewrite_with_report(model)
    how = result.report.layers["forgetful"].how
    assert how.startswith("object copy: re-created from its config it builds other")
    assert result.model.output.shape == (None, 4)
    assert_same_predictions(model, result.model, np.ones((2, 3), "float32"))


def test_an_untouched_layer_that_cannot_be_copied_either_is_a_rebuild_error_naming_it(
        monkeypatch):
    model = _block_model()
    from keras_rewrite.rebuild import layer_copy

    def refuse(layer):
        raise TypeError("no copy")

    monkeypatch.setattr(layer_copy, "copy_layer_object", refuse)
    with pytest.raises(kr.RebuildError, match=r"'block_without_config.*BlockWithoutConfig.*"
                                               r"from_config failed.*get_config"):
        kr.rewrite(model)


def _adapted(layer, data):
    layer.adapt(data)
    return layer


def _preprocessing_models():
    rng = np.random.default_rng(0)
    numbers = (rng.random((40, 3)) * 5).astype("float32")
    yield "normalization", keras.Sequential([
        keras.Input((3,)), _adapted(layers.Normalization(), numbers), layers.Dense(2)]), numbers
    words = np.array([["a"], ["b"], ["c"], ["a"], ["d"]])
    x = keras.Input((1,), dtype="string")
    yield "string_lookup", keras.Model(x, _adapted(layers.StringLookup(), words)(x)), \
        tf.constant([["a"], ["c"], ["zz"]])
    x = keras.Input((1,), dtype="int64")
    yield "integer_lookup", keras.Model(
        x, _adapted(layers.IntegerLookup(), np.array([[3], [5], [7], [3]]))(x)), \
        np.array([[3], [7], [9]])
    x = keras.Input((1,), dtype="string")
    vectorize = _adapted(layers.TextVectorization(max_tokens=20, output_sequence_length=4),
                         ["the cat sat", "the dog ran far"])
    yield "text_vectorization", keras.Model(x, layers.Embedding(20, 3)(vectorize(x))), \
        tf.constant([["the cat ran"], ["a dog"]])
    x = keras.Input((1,))
    yield "discretization", keras.Model(
        x, _adapted(layers.Discretization(num_bins=4), rng.random((50, 1)))(x)), \
        rng.random((6, 1)).astype("float32")


@pytest.mark.parametrize("name,model,x", list(_preprocessing_models()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_adapted_preprocessing_state_is_carried_exactly_and_survives_save_load(
        name, model, x, tmp_path):
    new = kr.rewrite(model)
    assert_same_predictions(model, new, x)
    new.save(tmp_path / "m.keras")
    assert_same_predictions(model, keras.saving.load_model(tmp_path / "m.keras"), x)


def _regularizers_by_variable(model):
    # By position: sub-layers' automatic names (and so variable paths) change on reloading.
    return [(v.name, None if v.regularizer is None else v.regularizer.get_config())
            for v in model.trainable_weights]


def test_regularizers_inside_custom_layers_survive_saving_and_loading(tmp_path):
    model = _block_model(BlockWithConfig)
    result = kr.rewrite_with_report(model, [kr.passes.L2Regularization(0.01)])
    new = result.model
    assert isinstance(new, kr.RewrittenFunctional)
    kernels = [v for v in new.trainable_weights if v.name == "kernel"]
    assert len(kernels) == 2 and all(v.regularizer.get_config() == {"l2": 0.01} for v in kernels)
    new.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded) is kr.RewrittenFunctional
    assert _regularizers_by_variable(loaded) == _regularizers_by_variable(new)
    x = np.random.default_rng(0).random((2, 5, 8)).astype("float32")
    assert_same_predictions(model, loaded, x)
    expected = sum(0.01 * np.sum(np.asarray(v, np.float64) ** 2) for v in kernels)
    assert float(sum(loaded.losses)) == pytest.approx(expected, rel=1e-6)


def test_copy_false_moves_the_variables_and_the_original_says_it_is_unusable():
    model = _block_model(BlockWithConfig)
    x = np.random.default_rng(0).random((2, 5, 8)).astype("float32")
    want = model.predict(x, verbose=0)
    originals = {id(v) for v in model.weights}
    result = kr.rewrite_with_report(model, copy=False)
    new = result.model
    assert {id(v) for v in new.weights} == originals  # moved, not copied
    assert np.array_equal(new.predict(x, verbose=0), want)
    assert result.report.layers[model.layers[1].name].how == (
        "object copy: variables moved (copy=False)")
    with pytest.raises(kr.RewriteError, match="rewritten with copy=False"):
        model.predict(x, verbose=0)
    with pytest.raises(kr.RewriteError, match="Expected copy=True or copy=False"):
        kr.rewrite(new, copy="no")


def test_copy_false_with_a_pass_still_carries_changed_layers():
    model = _block_model(BlockWithConfig)
    x = np.random.default_rng(0).random((2, 5, 8)).astype("float32")
    want = model.predict(x, verbose=0)
    new = kr.rewrite(model, [kr.passes.L2Regularization(0.01)], copy=False)
    assert np.array_equal(new.predict(x, verbose=0), want)
    assert sum(v.regularizer is not None for v in new.trainable_weights) == 2


def test_a_result_that_a_file_cannot_hold_is_noted():
    x = keras.Input((5, 8))
    block = BlockWithoutConfig(8, 16)  # no get_config: Keras cannot load it from a file
    model = keras.Model(x, layers.Dense(2, name="head")(block(x)))
    result = kr.rewrite_with_report(model, [kr.passes.L2Regularization(0.01)])
    assert any(f"a file of it will not load: layer '{block.name}'" in note
               for note in result.report.notes)
    assert kr.rewrite_with_report(_block_model(BlockWithConfig)).report.notes == []


def test_a_changed_constructor_config_model_saves_as_its_arguments_plus_the_passes(tmp_path):
    # TinyBackbone's layers save fine one by one, but the recipe is what a KerasHub model
    # whose layers do not (Llama, ViT, MiT, a loaded Gemma) needs: the zoo covers those.
    model = TinyBackbone(width=5, name="tiny")
    passes = [kr.passes.L2Regularization(0.01, per_layer={"head_a": 0}), "spatial_dropout"]
    result = kr.rewrite_with_report(model, passes)
    new = result.model
    assert new.recipe["model"]["class_name"] == "TinyBackbone"
    assert [p["class"] for p in new.recipe["passes"]] == ["L2Regularization", "SpatialDropout"]
    assert "saves as TinyBackbone's constructor arguments plus the passes" in result.report.notes[-1]
    for v in model.weights:  # trained-like values, so a fresh build would differ
        v.assign(np.random.default_rng(1).random(v.shape).astype("float32"))
    new = kr.rewrite(model, passes)
    new.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded) is type(new) and isinstance(loaded, TinyBackbone)
    assert loaded.recipe == new.recipe
    assert_same_predictions(model, loaded, {"x": np.ones((2, 3), "float32")})
    assert loaded.get_layer("hidden").kernel_regularizer.get_config() == {"l2": 0.01}
    assert loaded.get_layer("head_a").kernel_regularizer is None


def test_a_custom_pass_cannot_be_re_applied_so_the_model_saves_as_a_graph(tmp_path):
    model = TinyBackbone(width=5, name="tiny")

    def rename_nothing(graph):
        from keras_rewrite.passes import PassResult
        spec = graph.nodes["hidden"]["spec"]
        spec.config["activation"] = "tanh"
        return PassResult("rename_nothing", modified=True, outputs_unchanged=False)

    result = kr.rewrite_with_report(model, [rename_nothing])
    assert isinstance(result.model, TinyBackbone) and result.model.recipe is None
    assert "a custom pass cannot be re-applied" in result.report.notes[-1]
    # Its file holds the graph: it reloads as a RewrittenFunctional, the rewrite kept.
    result.model.save(tmp_path / "graph.keras")
    loaded = keras.saving.load_model(tmp_path / "graph.keras")
    assert type(loaded) is kr.RewrittenFunctional
    assert loaded.get_layer("hidden").get_config()["activation"] == "tanh"


@keras.saving.register_keras_serializable("test_fidelity")
class PopsItsConfig(layers.Dense):
    """Like KerasHub's MaskedLMHead: from_config edits the dict it is given."""

    def get_config(self):
        return {**super().get_config(), "extra": 1}

    @classmethod
    def from_config(cls, config):
        config.pop("extra")
        return super().from_config(config)


def test_a_from_config_that_edits_its_dict_does_not_edit_the_graph():
    x = keras.Input((3,))
    model = keras.Model(x, PopsItsConfig(2, name="pops")(x))
    graph = kr.to_graph(model)
    kr.to_model(graph)
    assert graph.nodes["pops"]["spec"].untouched
    assert graph.nodes["pops"]["spec"].config["extra"] == 1


def test_a_dict_of_more_than_ten_outputs_keeps_them_all():
    # Positions 0..11: a check that once sorted them as text ("10" < "2") refused this model.
    x = keras.Input((3,))
    model = keras.Model(x, {f"out_{i}": layers.Dense(1, name=f"d{i}")(x) for i in range(12)})
    new = kr.rewrite(model)
    assert list(new.output) == [f"out_{i}" for i in range(12)]
    assert_same_predictions(model, new, np.ones((2, 3), "float32"))
