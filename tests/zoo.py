"""The real-model zoo: small, CPU-cheap Keras models of many kinds, and the checks run on them.

Used by the slow tests (tests/test_zoo.py) and by the README table (tools/zoo_table.py).
Nothing is ever downloaded: keras.applications models use ``weights=None``, KerasHub models are
built from constructor arguments (never ``from_preset``), preprocessing layers are adapted on
small random data made with a fixed NumPy seed.

``ZOO`` maps a name to an `Entry` (how to build the model and a matching input batch).
``get(name)`` builds it once per process (a module-level cache shared by the checks); the
checks (``CHECKS``) raise an exception on failure and `NotApplicable` when a check does not
apply to a model (with the reason).

The custom layers and functions below are registered under the package "zoo", so saved zoo
models load in safe mode once this module is imported (the CLI: ``--custom-objects zoo`` with
tests/ on sys.path, or ``--custom-objects tests/zoo.py``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import pathlib
import tempfile
from typing import Any, Callable

import keras_rewrite  # noqa: I001  (first: it quiets TensorFlow before keras imports it)

import keras
import numpy as np
from keras import layers, ops

SEED = 1234
EAGER_FIT_ABOVE_LAYERS = 300  # see check_fit
ALL_PASSES = ["l2", "spatial_dropout", "reorder"]
# Config keys of regularizers on weight kernels, and the layer attribute holding that kernel.
KERNEL_REGULARIZERS = {
    "kernel_regularizer": "kernel",
    "recurrent_regularizer": "recurrent_kernel",
    "embeddings_regularizer": "embeddings",
    "depthwise_regularizer": "depthwise_kernel",
    "pointwise_regularizer": "pointwise_kernel",
}


class NotApplicable(Exception):
    """A check that does not apply to this model (the message says why)."""


# --------------------------------------------------------------------------------------------
# keras.io-style custom layers and functions
# --------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="zoo")
class TransformerBlock(layers.Layer):
    """keras.io "Text classification with Transformer", with a complete get_config."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.num_heads, self.ff_dim, self.rate = embed_dim, num_heads, ff_dim, rate
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential(
            [layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs, training=None):
        attn_output = self.att(inputs, inputs)
        attn_output = self.dropout1(attn_output, training=training)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output, training=training)
        return self.layernorm2(out1 + ffn_output)

    def get_config(self):
        config = super().get_config()
        config.update({"embed_dim": self.embed_dim, "num_heads": self.num_heads,
                       "ff_dim": self.ff_dim, "rate": self.rate})
        return config


@keras.saving.register_keras_serializable(package="zoo")
class TokenAndPositionEmbedding(layers.Layer):
    """keras.io "Text classification with Transformer", with a complete get_config."""

    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.maxlen, self.vocab_size, self.embed_dim = maxlen, vocab_size, embed_dim
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        maxlen = ops.shape(x)[-1]
        positions = ops.arange(start=0, stop=maxlen, step=1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions

    def get_config(self):
        config = super().get_config()
        config.update({"maxlen": self.maxlen, "vocab_size": self.vocab_size,
                       "embed_dim": self.embed_dim})
        return config


@keras.saving.register_keras_serializable(package="zoo")
class TransformerBlockPlain(layers.Layer):
    """The same block exactly as keras.io prints it: __init__ arguments only, no get_config."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential(
            [layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs):
        attn_output = self.att(inputs, inputs)
        attn_output = self.dropout1(attn_output)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output)
        return self.layernorm2(out1 + ffn_output)


@keras.saving.register_keras_serializable(package="zoo")
class TokenAndPositionEmbeddingPlain(layers.Layer):
    """keras.io's embedding layer as printed: __init__ arguments only, no get_config."""

    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        maxlen = ops.shape(x)[-1]
        positions = ops.arange(start=0, stop=maxlen, step=1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions


@keras.saving.register_keras_serializable(package="zoo")
class Sampling(layers.Layer):
    """keras.io VAE: uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch = ops.shape(z_mean)[0]
        dim = ops.shape(z_mean)[1]
        epsilon = keras.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


@keras.saving.register_keras_serializable(package="zoo")
def euclidean_distance(vects):
    """keras.io siamese network (contrastive loss): distance between two embeddings."""
    x, y = vects
    sum_square = ops.sum(ops.square(x - y), axis=1, keepdims=True)
    return ops.sqrt(ops.maximum(sum_square, keras.backend.epsilon()))


@keras.saving.register_keras_serializable(package="zoo")
def scale_255(x):
    """The seed U-Net's input scaling as a registered function instead of a lambda."""
    return x / 255


@keras.saving.register_keras_serializable(package="zoo")
class Patches(layers.Layer):
    """keras.io "Image classification with Vision Transformer", as printed there."""

    def __init__(self, patch_size):
        super().__init__()
        self.patch_size = patch_size

    def call(self, images):
        input_shape = ops.shape(images)
        batch_size = input_shape[0]
        height = input_shape[1]
        width = input_shape[2]
        channels = input_shape[3]
        num_patches_h = height // self.patch_size
        num_patches_w = width // self.patch_size
        patches = keras.ops.image.extract_patches(images, size=self.patch_size)
        patches = ops.reshape(
            patches,
            (batch_size, num_patches_h * num_patches_w,
             self.patch_size * self.patch_size * channels))
        return patches

    def get_config(self):
        config = super().get_config()
        config.update({"patch_size": self.patch_size})
        return config


@keras.saving.register_keras_serializable(package="zoo")
class PatchEncoder(layers.Layer):
    """keras.io ViT PatchEncoder, as printed there (its get_config omits projection_dim)."""

    def __init__(self, num_patches, projection_dim):
        super().__init__()
        self.num_patches = num_patches
        self.projection = layers.Dense(units=projection_dim)
        self.position_embedding = layers.Embedding(input_dim=num_patches,
                                                   output_dim=projection_dim)

    def call(self, patch):
        positions = ops.expand_dims(ops.arange(start=0, stop=self.num_patches, step=1), axis=0)
        projected_patches = self.projection(patch)
        encoded = projected_patches + self.position_embedding(positions)
        return encoded

    def get_config(self):
        config = super().get_config()
        config.update({"num_patches": self.num_patches})
        return config


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------

def _rng(offset=0):
    return np.random.default_rng(SEED + offset)


def _application(fn, shape, **kwargs):
    def build():
        return fn(weights=None, input_shape=shape, classes=10, **kwargs)
    return build


APPLICATIONS = {
    "ResNet50": (keras.applications.ResNet50, (32, 32, 3)),
    "ResNet50V2": (keras.applications.ResNet50V2, (32, 32, 3)),
    "MobileNet": (keras.applications.MobileNet, (32, 32, 3)),
    "MobileNetV2": (keras.applications.MobileNetV2, (32, 32, 3)),
    "MobileNetV3Small": (keras.applications.MobileNetV3Small, (32, 32, 3)),
    "DenseNet121": (keras.applications.DenseNet121, (32, 32, 3)),
    "EfficientNetB0": (keras.applications.EfficientNetB0, (32, 32, 3)),
    "EfficientNetV2B0": (keras.applications.EfficientNetV2B0, (32, 32, 3)),
    "InceptionV3": (keras.applications.InceptionV3, (75, 75, 3)),
    "InceptionResNetV2": (keras.applications.InceptionResNetV2, (75, 75, 3)),
    "Xception": (keras.applications.Xception, (71, 71, 3)),
    "VGG16": (keras.applications.VGG16, (32, 32, 3)),
    "VGG19": (keras.applications.VGG19, (32, 32, 3)),
    "NASNetMobile": (keras.applications.NASNetMobile, (32, 32, 3)),
    "ConvNeXtTiny": (keras.applications.ConvNeXtTiny, (32, 32, 3)),
}


# --- KerasHub -------------------------------------------------------------------------------

def _hub():
    import keras_hub
    return keras_hub


def _text_batch(keys=("token_ids", "padding_mask"), batch=2, length=8, vocab=50):
    def make(model):
        rng = _rng(1)
        out = {}
        for key in keys:
            if key == "token_ids":
                out[key] = rng.integers(1, vocab, size=(batch, length)).astype("int32")
            elif key == "padding_mask":
                mask = np.ones((batch, length), "int32")
                mask[1, -2:] = 0
                out[key] = mask
            elif key == "segment_ids":
                seg = np.zeros((batch, length), "int32")
                seg[:, length // 2:] = 1
                out[key] = seg
            elif key == "mask_positions":
                out[key] = np.array([[1, 2], [3, 5]], "int32")
            elif key.endswith("token_ids"):  # encoder_/decoder_token_ids (seq2seq)
                out[key] = rng.integers(1, vocab, size=(batch, length)).astype("int32")
            elif key.endswith("padding_mask"):
                out[key] = np.ones((batch, length), "int32")
        return out
    return make


_TEXT = dict(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
             max_sequence_length=16)


def _bert_backbone():
    return _hub().models.BertBackbone(**_TEXT)


def _resnet_backbone():
    return _hub().models.ResNetBackbone(
        input_conv_filters=[8], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 8],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="bottleneck_block",
        image_shape=(32, 32, 3))


def _hub_models():
    # Built lazily: importing keras_hub is only paid when a KerasHub model is built.
    return {
        "BertBackbone": lambda: _bert_backbone(),
        "AlbertBackbone": lambda: _hub().models.AlbertBackbone(
            vocabulary_size=50, num_layers=2, num_heads=2, embedding_dim=8, hidden_dim=8,
            intermediate_dim=16, max_sequence_length=16),
        "GPT2Backbone": lambda: _hub().models.GPT2Backbone(**_TEXT),
        "RobertaBackbone": lambda: _hub().models.RobertaBackbone(**_TEXT),
        "DistilBertBackbone": lambda: _hub().models.DistilBertBackbone(**_TEXT),
        "GemmaBackbone": lambda: _hub().models.GemmaBackbone(
            vocabulary_size=50, num_layers=1, num_query_heads=2, num_key_value_heads=1,
            hidden_dim=8, intermediate_dim=16, head_dim=4),
        "LlamaBackbone": lambda: _hub().models.LlamaBackbone(
            vocabulary_size=50, num_layers=1, num_query_heads=2, num_key_value_heads=1,
            hidden_dim=8, intermediate_dim=16),
        "ViTBackbone": lambda: _hub().models.ViTBackbone(
            image_shape=(16, 16, 3), patch_size=4, num_layers=1, num_heads=2, hidden_dim=8,
            mlp_dim=16),
        "MiTBackbone": lambda: _hub().models.MiTBackbone(
            layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
            layerwise_sr_ratios=[2, 1], max_drop_path_rate=0.1, layerwise_patch_sizes=[7, 3],
            layerwise_strides=[4, 2], image_shape=(32, 32, 3), hidden_dims=[4, 8]),
        "ResNetBackbone": _resnet_backbone,
        "CSPNetBackbone": lambda: _hub().models.CSPNetBackbone(
            stem_filters=8, stem_kernel_size=3, stem_strides=1, stackwise_depth=[1, 1],
            stackwise_strides=[1, 2], stackwise_num_filters=[8, 16], block_type="dark_block",
            stage_type="dark", image_shape=(32, 32, 3)),
        "VGGBackbone": lambda: _hub().models.VGGBackbone(
            stackwise_num_repeats=[1, 1], stackwise_num_filters=[4, 8], image_shape=(16, 16, 3)),
        "DenseNetBackbone": lambda: _hub().models.DenseNetBackbone(
            stackwise_num_repeats=[1, 1], growth_rate=4, image_shape=(32, 32, 3)),
        "BertTextClassifier": lambda: _hub().models.BertTextClassifier(
            backbone=_bert_backbone(), num_classes=3, preprocessor=None),
        "ResNetImageClassifier": lambda: _hub().models.ResNetImageClassifier(
            backbone=_resnet_backbone(), num_classes=3, preprocessor=None),
        "GPT2CausalLM": lambda: _hub().models.GPT2CausalLM(
            backbone=_hub().models.GPT2Backbone(**_TEXT), preprocessor=None),
        # More families users reach for (decoders with RoPE, seq2seq, masked LM heads that
        # tie the embedding, an EfficientNet image classifier).
        "MistralBackbone": lambda: _hub().models.MistralBackbone(**_DECODER),
        "QwenBackbone": lambda: _hub().models.QwenBackbone(**_DECODER),
        "FalconBackbone": lambda: _hub().models.FalconBackbone(
            vocabulary_size=50, num_layers=1, num_attention_heads=2, hidden_dim=8,
            intermediate_dim=16),
        "DebertaV3Backbone": lambda: _hub().models.DebertaV3Backbone(**_TEXT),
        "BartBackbone": lambda: _hub().models.BartBackbone(**_TEXT),
        "BertMaskedLM": lambda: _hub().models.BertMaskedLM(
            backbone=_bert_backbone(), preprocessor=None),
        "LlamaCausalLM": lambda: _hub().models.LlamaCausalLM(
            backbone=_hub().models.LlamaBackbone(**_DECODER), preprocessor=None),
        "EfficientNetImageClassifier": lambda: _hub().models.ImageClassifier(
            backbone=_hub().models.EfficientNetBackbone(
                width_coefficient=0.1, depth_coefficient=0.1, stackwise_kernel_sizes=[3],
                stackwise_num_repeats=[1], stackwise_input_filters=[8],
                stackwise_output_filters=[8], stackwise_expansion_ratios=[1],
                stackwise_squeeze_and_excite_ratios=[0.25], stackwise_strides=[1],
                stackwise_block_types=["v1"], image_shape=(32, 32, 3)),
            num_classes=3),
    }


_DECODER = dict(vocabulary_size=50, num_layers=1, num_query_heads=2, num_key_value_heads=1,
                hidden_dim=8, intermediate_dim=16)


def _with_state(build, how):
    """A KerasHub model as users bring it (issue 16): quantized (int8, int4, float8, or int8
    on the feed-forward kernels only) or with LoRA (a trained-like adapter: lora_kernel_b
    non-zero, so it changes predictions)."""
    import warnings
    from unittest import mock

    def make():
        model = build()
        mode, _, only = how.partition(":")
        if mode in ("int8", "int4", "float8"):
            # Keras runs gc.collect() per deleted kernel (0.3 s each): not needed here.
            with warnings.catch_warnings(), mock.patch("gc.collect", lambda *args: 0):
                warnings.simplefilter("ignore")
                model.quantize(mode, filters=only or None)
        elif mode == "lora":
            (model.backbone if hasattr(model, "backbone") else model).enable_lora(2)
            for v in model.weights:
                if v.path.endswith("lora_kernel_b"):
                    v.assign(np.full(v.shape, 0.05, "float32"))
        return model
    return make


# (zoo name, model it starts from, state): KerasHub models quantized or with LoRA.
STATEFUL = [("GPT2Backbone_int8", "GPT2Backbone", "int8"),
            ("BertBackbone_lora", "BertBackbone", "lora"),
            ("GemmaBackbone_int4", "GemmaBackbone", "int4"),
            ("BertTextClassifier_float8", "BertTextClassifier", "float8"),
            ("GPT2CausalLM_lora", "GPT2CausalLM", "lora"),
            ("LlamaBackbone_int8_ffn", "LlamaBackbone", "int8:feedforward")]


def _sparse_labels(num_classes):
    def make(model, x, outputs):
        return _rng(2).integers(0, num_classes, size=(2,)).astype("int32")
    return make


def _token_labels(model, x, outputs):
    return _rng(2).integers(0, 50, size=np.shape(outputs)[:2]).astype("int32")


# --- keras.io style -------------------------------------------------------------------------

def transformer_classifier(with_config=True, maxlen=8, vocab_size=50, embed_dim=8):
    block, embedding = ((TransformerBlock, TokenAndPositionEmbedding) if with_config
                        else (TransformerBlockPlain, TokenAndPositionEmbeddingPlain))
    inputs = layers.Input(shape=(maxlen,))
    embedding_layer = embedding(maxlen, vocab_size, embed_dim)
    x = embedding_layer(inputs)
    transformer_block = block(embed_dim, 2, 16)
    x = transformer_block(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(8, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def _token_batch(shape=(2, 8), vocab=50, zeros_at_end=0, dtype="float32"):
    def make(model):
        x = _rng(1).integers(1, vocab, size=shape).astype(dtype)
        if zeros_at_end:
            x[:, -zeros_at_end:] = 0
        return x
    return make


def vae_encoder(latent_dim=2):
    encoder_inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(4, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
    x = layers.Conv2D(8, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    return keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")


def vae_decoder(latent_dim=2):
    latent_inputs = keras.Input(shape=(latent_dim,))
    x = layers.Dense(7 * 7 * 8, activation="relu")(latent_inputs)
    x = layers.Reshape((7, 7, 8))(x)
    x = layers.Conv2DTranspose(8, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(4, 3, activation="relu", strides=2, padding="same")(x)
    decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    return keras.Model(latent_inputs, decoder_outputs, name="decoder")


def siamese():
    """keras.io "Image similarity estimation using a Siamese Network with a contrastive loss"."""
    input = layers.Input((16, 16, 1))
    x = layers.BatchNormalization()(input)
    x = layers.Conv2D(4, (5, 5), activation="tanh")(x)
    x = layers.AveragePooling2D(pool_size=(2, 2))(x)
    x = layers.Conv2D(8, (3, 3), activation="tanh")(x)
    x = layers.AveragePooling2D(pool_size=(2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dense(10, activation="tanh")(x)
    embedding_network = keras.Model(input, x)

    input_1 = layers.Input((16, 16, 1))
    input_2 = layers.Input((16, 16, 1))
    tower_1 = embedding_network(input_1)
    tower_2 = embedding_network(input_2)
    merge_layer = layers.Lambda(euclidean_distance, output_shape=(1,))([tower_1, tower_2])
    normal_layer = layers.BatchNormalization()(merge_layer)
    output_layer = layers.Dense(1, activation="sigmoid")(normal_layer)
    return keras.Model(inputs=[input_1, input_2], outputs=output_layer)


def unet_keras_io(img_size=(32, 32), num_classes=3):
    """keras.io "Image segmentation with a U-Net-like architecture", filters divided by 8."""
    inputs = keras.Input(shape=img_size + (3,))
    x = layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous_block_activation = x
    for filters in [8, 16, 32]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(filters, 1, strides=2, padding="same")(previous_block_activation)
        x = layers.add([x, residual])
        previous_block_activation = x
    for filters in [32, 16, 8, 4]:
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.UpSampling2D(2)(x)
        residual = layers.UpSampling2D(2)(previous_block_activation)
        residual = layers.Conv2D(filters, 1, padding="same")(residual)
        x = layers.add([x, residual])
        previous_block_activation = x
    outputs = layers.Conv2D(num_classes, 3, activation="softmax", padding="same")(x)
    return keras.Model(inputs, outputs)


def bilstm_text(max_features=50):
    """keras.io "Bidirectional LSTM on IMDB", small, with a padding mask."""
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(max_features, 8, mask_zero=True)(inputs)
    x = layers.Bidirectional(layers.LSTM(4, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(4))(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def style_transfer_features():
    """keras.io "Neural style transfer": VGG19 features, a dict keyed by layer name."""
    model = keras.applications.vgg19.VGG19(weights=None, include_top=False)
    outputs_dict = dict([(layer.name, layer.output) for layer in model.layers])
    return keras.Model(inputs=model.inputs, outputs=outputs_dict)


def vit_classifier(image_size=16, patch_size=4, projection_dim=8, num_classes=3):
    """keras.io "Image classification with Vision Transformer", tiny."""
    rng = _rng(3)
    data_augmentation = keras.Sequential(
        [layers.Normalization(), layers.Resizing(image_size, image_size),
         layers.RandomFlip("horizontal")],
        name="data_augmentation")
    data_augmentation.layers[0].adapt(rng.random((16, 20, 20, 3)).astype("float32"))
    num_patches = (image_size // patch_size) ** 2
    inputs = keras.Input(shape=(20, 20, 3))
    augmented = data_augmentation(inputs)
    patches = Patches(patch_size)(augmented)
    encoded_patches = PatchEncoder(num_patches, projection_dim)(patches)
    for _ in range(1):
        x1 = layers.LayerNormalization(epsilon=1e-6)(encoded_patches)
        attention_output = layers.MultiHeadAttention(
            num_heads=2, key_dim=projection_dim, dropout=0.1)(x1, x1)
        x2 = layers.Add()([attention_output, encoded_patches])
        x3 = layers.LayerNormalization(epsilon=1e-6)(x2)
        for units in [projection_dim * 2, projection_dim]:
            x3 = layers.Dense(units, activation=keras.activations.gelu)(x3)
            x3 = layers.Dropout(0.1)(x3)
        encoded_patches = layers.Add()([x3, x2])
    representation = layers.LayerNormalization(epsilon=1e-6)(encoded_patches)
    representation = layers.Flatten()(representation)
    representation = layers.Dropout(0.5)(representation)
    features = layers.Dense(16, activation=keras.activations.gelu)(representation)
    features = layers.Dropout(0.5)(features)
    logits = layers.Dense(num_classes)(features)
    return keras.Model(inputs=inputs, outputs=logits)


def time_distributed_bidirectional():
    """Frames -> TimeDistributed CNN -> Bidirectional GRU (a video-classifier shape)."""
    inputs = keras.Input((4, 8, 8, 1))
    x = layers.TimeDistributed(layers.Conv2D(4, 3, activation="relu"))(inputs)
    x = layers.TimeDistributed(layers.MaxPooling2D())(x)
    x = layers.TimeDistributed(layers.Flatten())(x)
    x = layers.TimeDistributed(layers.Dense(8))(x)
    x = layers.Bidirectional(layers.GRU(4, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(4), merge_mode="sum")(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def mha_functional():
    """MultiHeadAttention called directly: self-attention, then cross-attention to a context."""
    query = keras.Input((6, 8), name="query")
    context = keras.Input((4, 8), name="context")
    attn = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="self_attention")(query, query)
    x = layers.LayerNormalization()(layers.Add()([query, attn]))
    cross = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="cross_attention")(
        x, context, context)
    x = layers.LayerNormalization()(layers.Add()([x, cross]))
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(2)(x)
    return keras.Model([query, context], outputs)


# --- adapted preprocessing ------------------------------------------------------------------

WORDS = ["red", "green", "blue", "cyan", "magenta", "yellow", "black", "white"]
SENTENCES = ["the cat sat on the mat", "a dog ate my homework", "the red fox jumped",
             "green eggs and ham", "the quick brown dog", "my cat is black"]


def normalization_model():
    data = (_rng(4).standard_normal((64, 4)) * [1.0, 3.0, 10.0, 0.1] + [0, 5, -2, 1])
    norm = layers.Normalization()
    norm.adapt(data.astype("float32"))
    inputs = keras.Input((4,))
    x = norm(inputs)
    x = layers.Dense(8, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(1)(x))


def string_lookup_model():
    lookup = layers.StringLookup()
    lookup.adapt(np.array(WORDS * 2 + WORDS[:3]))
    inputs = keras.Input((3,), dtype="string")
    x = lookup(inputs)
    x = layers.Embedding(lookup.vocabulary_size(), 4)(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(1)(x))


def integer_lookup_model():
    lookup = layers.IntegerLookup()
    lookup.adapt(np.array([10, 20, 30, 40, 50, 10, 20, 10], "int64"))
    inputs = keras.Input((3,), dtype="int64")
    x = lookup(inputs)
    x = layers.Embedding(lookup.vocabulary_size(), 4)(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(1)(x))


def text_vectorization_model():
    vectorize = layers.TextVectorization(max_tokens=24, output_sequence_length=6)
    vectorize.adapt(np.array(SENTENCES))
    inputs = keras.Input(shape=(1,), dtype="string")
    x = vectorize(inputs)
    x = layers.Embedding(24, 4)(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


def discretization_model():
    disc = layers.Discretization(num_bins=4)
    disc.adapt(_rng(5).standard_normal((64, 1)).astype("float32"))
    inputs = keras.Input((1,))
    x = disc(inputs)
    x = layers.CategoryEncoding(num_tokens=4, output_mode="one_hot")(x)
    return keras.Model(inputs, layers.Dense(1)(x))


def _strings(rows, cols, vocab, oov=("purple",)):
    def make(model):
        pool = list(vocab) + list(oov)
        idx = _rng(6).integers(0, len(pool), size=(rows, cols))
        return np.array([[pool[i] for i in row] for row in idx])
    return make


# --- hand-made ------------------------------------------------------------------------------

def dict_outputs():
    inputs = keras.Input((8,))
    h = layers.Dense(16, activation="relu", name="trunk")(inputs)
    b = layers.Dense(3, name="head_b")(h)
    a = layers.Reshape((2, 3), name="head_a")(layers.Dense(6)(h))
    return keras.Model(inputs, {"b": b, "a": a})


def dict_inputs():
    meta = keras.Input((3,), name="meta")
    image = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(4, 3, activation="relu")(image)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Concatenate()([x, layers.Dense(4)(meta)])
    return keras.Model({"meta": meta, "image": image}, layers.Dense(2)(x))


def list_outputs():
    inputs = keras.Input((8,))
    h = layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, [layers.Dense(1)(h), layers.Dense(4)(h), layers.Dense(2)(h)])


def nested_outputs():
    inputs = keras.Input((6,))
    h = layers.Dense(8, activation="relu")(inputs)
    first, second, aux = layers.Dense(2)(h), layers.Dense(3)(h), layers.Dense(1)(h)
    return keras.Model(inputs, {"heads": [first, second], "aux": aux})


def channels_first_cnn():
    inputs = keras.Input((3, 16, 16))
    x = layers.Conv2D(4, 3, padding="same", data_format="channels_first")(inputs)
    x = layers.BatchNormalization(axis=1)(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D(data_format="channels_first")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Conv2D(8, 3, padding="same", data_format="channels_first")(x)
    x = layers.BatchNormalization(axis=1)(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D(data_format="channels_first")(x)
    return keras.Model(inputs, layers.Dense(3)(x))


def shared_layers_and_ops():
    """A layer called twice, raw keras.ops between layers, a nested Sequential."""
    left, right = keras.Input((5,)), keras.Input((5,))
    shared = layers.Dense(6, activation="relu", name="shared")
    a, b = shared(left), shared(right)
    x = ops.add(a, b) * 0.5
    x = ops.concatenate([x, ops.abs(a - b)], axis=-1)
    head = keras.Sequential([layers.Dense(4, activation="relu"), layers.Dropout(0.1),
                             layers.Dense(1)], name="head")
    return keras.Model([left, right], head(x[:, :10]))


def transfer_learning():
    """keras.io "image classification via fine-tuning": augmentation, a frozen application."""
    augmentation = keras.Sequential([layers.RandomFlip("horizontal"),
                                     layers.RandomRotation(0.1)], name="img_augmentation")
    inputs = keras.Input((32, 32, 3))
    base = keras.applications.MobileNetV2(include_top=False, weights=None,
                                          input_shape=(32, 32, 3))
    base.trainable = False
    x = base(augmentation(inputs), training=False)
    x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Dense(3)(x))


@keras.saving.register_keras_serializable("zoo")
class CTCLayer(layers.Layer):
    """keras.io OCR: a layer that adds the training loss and passes predictions through."""

    def call(self, y_true, y_pred):
        self.add_loss(ops.mean(ops.square(y_pred)) + 0.0 * ops.mean(y_true))
        return y_pred


def ocr_ctc():
    image = keras.Input((16, 8, 1), name="image")
    label = keras.Input((4,), name="label")
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    x = layers.Reshape((16, 32))(x)
    x = layers.Bidirectional(layers.LSTM(4, return_sequences=True, dropout=0.25))(x)
    return keras.Model([image, label],
                       CTCLayer(name="ctc_loss")(label, layers.Dense(5, activation="softmax")(x)))


def conv_autoencoder():
    inputs = keras.Input((16, 16, 1))
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Conv2D(4, 3, activation="relu", padding="same", strides=2)(x)
    x = layers.Conv2DTranspose(4, 3, strides=2, activation="relu", padding="same")(x)
    return keras.Model(inputs, layers.Conv2D(1, 3, activation="sigmoid", padding="same")(x))


def timeseries_conv1d():
    inputs = keras.Input((20, 1))
    x = inputs
    for _ in range(2):
        x = layers.ReLU()(layers.BatchNormalization()(layers.Conv1D(8, 3, padding="same")(x)))
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x))


def gan_discriminator():
    inputs = keras.Input((28, 28, 1))
    x = layers.LeakyReLU(negative_slope=0.2)(layers.Conv2D(8, 3, strides=2, padding="same")(inputs))
    x = layers.LeakyReLU(negative_slope=0.2)(layers.Conv2D(16, 3, strides=2, padding="same")(x))
    return keras.Model(inputs, layers.Dense(1)(layers.GlobalMaxPooling2D()(x)))


# --- seed models ----------------------------------------------------------------------------

def _seed_models():
    import importlib
    import sys
    examples = pathlib.Path(__file__).resolve().parent.parent / "examples"
    if str(examples) not in sys.path:
        sys.path.insert(0, str(examples))
    return importlib.import_module("seed_models")


# --------------------------------------------------------------------------------------------
# The zoo
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    source: str  # keras.applications | KerasHub | keras.io style | preprocessing | hand-made
    build: Callable[[], keras.Model]
    # model -> a small input batch (default: random data shaped like model.input).
    batch: Callable[[keras.Model], Any] | None = None
    # (model, x, outputs) -> fit targets (default: uniform [0, 1) floats like the outputs).
    targets: Callable[[keras.Model, Any, Any], Any] | None = None
    unsafe: bool = False  # holds a Python lambda: loads only with safe_mode=False / --unsafe

    def make_batch(self, model):
        return (self.batch or random_batch)(model)


def random_batch(model, batch=2, seed=SEED):
    """Random data shaped like `model.input` (dicts and lists kept); None dims become 8/32."""
    rng = np.random.default_rng(seed)

    def make(t):
        dims = list(t.shape[1:])
        default = 32 if len(dims) == 3 else 8  # image-like inputs with free height/width
        shape = [batch] + [default if d is None else d for d in dims]
        if "int" in str(t.dtype):
            return rng.integers(0, 10, size=shape).astype(str(t.dtype))
        return rng.random(shape).astype("float32")

    try:
        structure = model.input
    except AttributeError:  # a Sequential model started with keras.Input
        structure = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.tree.map_structure(make, structure)


def _zoo():
    zoo = {}

    def add(name, source, build, **kw):
        assert name not in zoo, name
        zoo[name] = Entry(name, source, build, **kw)

    for name, (fn, shape) in APPLICATIONS.items():
        add(name, "keras.applications", _application(fn, shape))

    seq2seq = ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids",
               "decoder_padding_mask")
    text_inputs = {"BertBackbone": ("token_ids", "segment_ids", "padding_mask"),
                   "AlbertBackbone": ("token_ids", "segment_ids", "padding_mask"),
                   "BertTextClassifier": ("token_ids", "segment_ids", "padding_mask"),
                   "BertMaskedLM": ("token_ids", "segment_ids", "padding_mask",
                                    "mask_positions"),
                   "BartBackbone": seq2seq}
    for name, build in _hub_models().items():
        kw = {}
        if name in text_inputs or name in ("GPT2Backbone", "RobertaBackbone",
                                           "DistilBertBackbone", "GemmaBackbone",
                                           "LlamaBackbone", "GPT2CausalLM", "MistralBackbone",
                                           "QwenBackbone", "FalconBackbone",
                                           "DebertaV3Backbone", "LlamaCausalLM"):
            kw["batch"] = _text_batch(text_inputs.get(name, ("token_ids", "padding_mask")))
        if name.endswith("Classifier"):
            kw["targets"] = _sparse_labels(3)
        if name in ("GPT2CausalLM", "LlamaCausalLM", "BertMaskedLM"):
            kw["targets"] = _token_labels
        add(name, "KerasHub", build, **kw)
        for stateful, base, how in STATEFUL:
            if base == name:
                add(stateful, "KerasHub, quantized or LoRA", _with_state(build, how), **kw)

    add("transformer_text_with_config", "keras.io style",
        lambda: transformer_classifier(with_config=True), batch=_token_batch())
    add("transformer_text_no_get_config", "keras.io style",
        lambda: transformer_classifier(with_config=False), batch=_token_batch())
    add("vae_encoder", "keras.io style", vae_encoder)
    add("vae_decoder", "keras.io style", vae_decoder)
    add("siamese_registered_distance", "keras.io style", siamese)
    add("unet_keras_io", "keras.io style", unet_keras_io)
    add("bilstm_mask_zero", "keras.io style", bilstm_text,
        batch=_token_batch((2, 10), zeros_at_end=3, dtype="int32"))
    add("style_transfer_features", "keras.io style", style_transfer_features)
    add("vit_patch_encoder", "keras.io style", vit_classifier)
    add("time_distributed_bidirectional", "keras.io style", time_distributed_bidirectional)
    add("mha_functional", "keras.io style", mha_functional)
    add("transfer_learning_augmented", "keras.io style", transfer_learning)
    add("ocr_ctc_add_loss", "keras.io style", ocr_ctc)
    add("conv_autoencoder", "keras.io style", conv_autoencoder)
    add("timeseries_conv1d", "keras.io style", timeseries_conv1d)
    add("gan_discriminator", "keras.io style", gan_discriminator)

    add("normalization_adapted", "preprocessing", normalization_model)
    add("string_lookup_adapted", "preprocessing", string_lookup_model,
        batch=_strings(2, 3, WORDS))
    add("integer_lookup_adapted", "preprocessing", integer_lookup_model,
        batch=lambda m: np.array([[10, 20, 30], [40, 50, 99]], "int64"))
    add("text_vectorization_adapted", "preprocessing", text_vectorization_model,
        batch=lambda m: np.array([["the cat ate the red fox"], ["a quick green dog sat"]]))
    add("discretization_adapted", "preprocessing", discretization_model,
        batch=lambda m: np.array([[-1.5], [0.2]], "float32"))

    add("dict_outputs_unsorted", "hand-made", dict_outputs)
    add("dict_inputs", "hand-made", dict_inputs)
    add("list_outputs", "hand-made", list_outputs)
    add("nested_outputs", "hand-made", nested_outputs)
    add("channels_first_cnn", "hand-made", channels_first_cnn)
    add("shared_layers_and_ops", "hand-made", shared_layers_and_ops)

    add("seed_unet_lambda", "seed", lambda: _seed_models().build_unet((32, 32, 3)), unsafe=True)
    add("seed_unet_registered_scale", "seed",
        lambda: _seed_models().build_unet((32, 32, 3), scale=scale_255))
    add("seed_cnn", "seed", lambda: _seed_models().build_cnn())
    return zoo


ZOO: dict[str, Entry] = _zoo()
NAMES = list(ZOO)

_CACHE: dict[str, tuple[keras.Model, Any]] = {}


def build(name):
    """A fresh model and its batch (seeded: the same weights every time)."""
    entry = ZOO[name]
    keras.utils.set_random_seed(SEED)
    model = entry.build()
    if not model.built:
        raise RuntimeError(f"zoo model {name} is not built")
    return model, entry.make_batch(model)


def get(name):
    """The shared (cached) model and batch. Checks must not modify them."""
    if name not in _CACHE:
        _CACHE[name] = build(name)
    return _CACHE[name]


def clear_cache():
    _CACHE.clear()


# --------------------------------------------------------------------------------------------
# Helpers of the checks
# --------------------------------------------------------------------------------------------

def outputs(model, x):
    """Inference outputs as NumPy, in the model's own structure (dicts keep their keys)."""
    return keras.tree.map_structure(keras.ops.convert_to_numpy, model(x, training=False))


def backend_limitation(exc):
    """The reason, if `exc` is something the current Keras backend cannot do at all (not a
    failure of the rewrite); None otherwise. TensorFlow is the reference: nothing is excused
    there."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return None
    text = f"{type(exc).__name__}: {exc}"
    for pattern, reason in _LIMITATIONS:
        if pattern in text:
            return f"Keras on {backend}: {reason}"
    return None


# (text of the error, what it means); found by running the zoo under jax and torch.
_LIMITATIONS = [
    ("data type 'string' not understood", "no string tensors (StringLookup and "
                                          "TextVectorization on strings run on TensorFlow "
                                          "only)"),
    ("Invalid dtype: str", "no string tensors (StringLookup and TextVectorization on strings "
                           "run on TensorFlow only)"),
    ("is not available with the torch backend", "keras.applications refuses to build it "
                                                "('not available with the torch backend at "
                                                "this time due to an outstanding bug')"),
]


def output_differences(expected, received, path="output", values=True):
    """Human-readable differences between two output structures (empty: identical)."""
    if isinstance(expected, dict):
        if not isinstance(received, dict):
            return [f"{path}: expected a dict, received {type(received).__name__}"]
        if set(expected) != set(received):
            return [f"{path}: keys {sorted(received)}, expected {sorted(expected)}"]
        problems = []
        if list(expected) != list(received):
            problems.append(f"{path}: key order {list(received)}, expected {list(expected)}")
        for key in expected:
            problems += output_differences(expected[key], received[key], f"{path}[{key!r}]",
                                           values)
        return problems
    if isinstance(expected, (list, tuple)):
        if not isinstance(received, (list, tuple)) or len(received) != len(expected):
            return [f"{path}: expected a sequence of {len(expected)}, received "
                    f"{type(received).__name__} of {len(received) if hasattr(received, '__len__') else '?'}"]
        problems = []
        for i, (e, r) in enumerate(zip(expected, received)):
            problems += output_differences(e, r, f"{path}[{i}]", values)
        return problems
    expected, received = np.asarray(expected), np.asarray(received)
    if expected.shape != received.shape:
        return [f"{path}: shape {received.shape}, expected {expected.shape}"]
    if values and not np.array_equal(expected, received):
        if expected.dtype.kind in "fc":
            diff = np.nanmax(np.abs(expected.astype("float64") - received.astype("float64")))
            return [f"{path}: values differ (max |diff| {diff:.3g})"]
        return [f"{path}: values differ"]
    return []


def fail_if(problems, what):
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise AssertionError(f"{what}: " + "; ".join(problems[:3]) + more)


def all_layers(model):
    """The model's layers, nested models' layers included, in order (as keras.Model shows)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(all_layers(layer))
    return out


def sublayer_tree(layer, path=""):
    """(path, layer) for every layer under `layer`, sublayers of layers included.

    A path is made of positions and class names ("/3:TransformerBlock/0:MultiHeadAttention"),
    not of layer names: sublayers named automatically (``dense_17``) get other names in a
    model loaded from a file, while their places stay the same."""
    out = []
    for i, child in enumerate(layer._flatten_layers(include_self=False, recursive=False)):
        child_path = f"{path}/{i}:{type(child).__name__}"
        out.append((child_path, child))
        out.extend(sublayer_tree(child, child_path))
    return out


def layer_names(model):
    """{sublayer_tree path: "outer/inner" layer names}, for messages."""
    names, out = {"": ""}, {}
    for path, layer in sublayer_tree(model):
        parent = path.rsplit("/", 1)[0]
        names[path] = f"{names.get(parent, '')}/{layer.name}"
        out[path] = names[path].lstrip("/")
    return out


def _safe_config(layer):
    try:
        return layer.get_config(), None
    except Exception as exc:  # noqa: BLE001 — reported, not hidden
        return None, f"{type(exc).__name__}: {exc}"


def regularizer_factors(model):
    """{layer path: {config key: L2 factor (or repr)}} for every *_regularizer in the configs
    of the model's layers and their sublayers."""
    factors = {}
    for path, layer in sublayer_tree(model):
        if isinstance(layer, keras.Model):
            continue  # its layers are listed on their own
        config, _ = _safe_config(layer)
        if not config:
            continue
        for key, value in config.items():
            if key.endswith("_regularizer"):
                factors.setdefault(path, {})[key] = _factor(value)
    return factors


def _factor(value):
    if value is None:
        return None
    if isinstance(value, dict):
        inner = value.get("config", {})
        if value.get("class_name") in ("L2", "l2") and "l2" in inner:
            return float(inner["l2"])
        return repr(value)
    if isinstance(value, keras.regularizers.L2):
        return float(value.l2)
    return repr(value)


def kernel_layers(model):
    """(path, layer, config key, variable) for each trainable weight kernel under `model`."""
    found = []
    for path, layer in sublayer_tree(model):
        if isinstance(layer, keras.Model):
            continue
        config, _ = _safe_config(layer)
        for key, attr in KERNEL_REGULARIZERS.items():
            if config is None or key not in config:
                continue
            try:
                variable = getattr(layer, attr, None)
            except Exception:  # noqa: BLE001 — a property of an unbuilt layer
                variable = None
            if isinstance(variable, keras.Variable) and variable.trainable:
                found.append((path, layer, key, variable))
    return found


def sync_seed_states(source, target):
    """Give `target`'s random seed generators the states of `source`'s (matched by layer
    path). A layer that samples at inference (the VAE's Sampling) draws from a state that
    advances on every call and is not a weight; with equal states both models draw the same
    noise, so their outputs can be compared bit for bit whatever was called before."""
    target_layers = dict(sublayer_tree(target))
    for path, layer in [("", source)] + sublayer_tree(source):
        other = target if path == "" else target_layers.get(path)
        if other is None:
            continue
        mine = [v for v in layer.variables if v.path.endswith("seed_generator_state")]
        theirs = [v for v in other.variables if v.path.endswith("seed_generator_state")]
        if len(mine) == len(theirs):
            for a, b in zip(mine, theirs):
                b.assign(a)


def compare_outputs(expected_model, received_model, x, values=True):
    """output_differences of two models on `x`, their seed generators in the same state."""
    sync_seed_states(expected_model, received_model)
    return output_differences(outputs(expected_model, x), outputs(received_model, x),
                              values=values)


def _without_build_config(config):
    """The config without its build_config entries (nested ones too). A build_config records
    the shape a layer was first built with (for an adapted Normalization, the batch size of
    the adapt data), not what the layer is: the identity check does not compare it."""
    if isinstance(config, dict):
        return {k: _without_build_config(v) for k, v in config.items() if k != "build_config"}
    if isinstance(config, (list, tuple)):
        return type(config)(_without_build_config(v) for v in config)
    return config


def first_difference(a, b, path="config"):
    """Where two configs first differ ("config['layers'][3]['name']: 'x' != 'y'"), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"{path}: keys {sorted(set(a) ^ set(b)) or 'in another order'}"
        for k in a:
            d = first_difference(a[k], b[k], f"{path}[{k!r}]")
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: length {len(b)}, expected {len(a)}"
        for i, (u, v) in enumerate(zip(a, b)):
            d = first_difference(u, v, f"{path}[{i}]")
            if d:
                return d
        return None
    if a != b:
        return f"{path}: {str(b)[:60]}, expected {str(a)[:60]}"
    return None


def _has_integer_outputs(out):
    return any(np.asarray(o).dtype.kind in "iub" for o in keras.tree.flatten(out))


# --------------------------------------------------------------------------------------------
# The checks: each raises on failure, NotApplicable when it does not apply
# --------------------------------------------------------------------------------------------

def check_identity(model, x):
    """rewrite(model): same class, bit-identical outputs, same layer configs and weights."""
    new = keras_rewrite.rewrite(model)
    problems = []
    if type(new) is not type(model):
        problems.append(f"class {type(new).__name__}, expected {type(model).__name__}")
    problems += compare_outputs(model, new, x)
    la, lb = all_layers(model), all_layers(new)
    if [l.name for l in la] != [l.name for l in lb]:
        missing = sorted({l.name for l in la} - {l.name for l in lb})
        extra = sorted({l.name for l in lb} - {l.name for l in la})
        problems.append(f"layer names differ (missing {missing[:3]}, extra {extra[:3]})")
    else:
        for a, b in zip(la, lb):
            if type(a) is not type(b):
                problems.append(f"{a.name}: class {type(b).__name__}, expected "
                                f"{type(a).__name__}")
                continue
            ca, err_a = _safe_config(a)
            cb, err_b = _safe_config(b)
            if err_a is None and err_b is not None:
                problems.append(f"{a.name}: get_config fails on the copy ({err_b})")
            elif err_a is None:
                diff = first_difference(_without_build_config(ca), _without_build_config(cb))
                if diff:
                    problems.append(f"{a.name}: {diff}")
            wa, wb = a.weights, b.weights
            if [tuple(w.shape) for w in wa] != [tuple(w.shape) for w in wb]:
                problems.append(f"{a.name}: {len(wb)} weights, expected {len(wa)} (or shapes "
                                "differ)")
                continue
            for u, v in zip(wa, wb):
                if not np.array_equal(np.asarray(u), np.asarray(v)):
                    problems.append(f"{a.name}/{u.name}: weight values differ")
    ca, err_a = _safe_config(model)
    cb, err_b = _safe_config(new)
    if err_a is None and err_b is not None:
        problems.append(f"model get_config fails on the copy ({err_b})")
    elif err_a is None:
        diff = first_difference(_without_build_config(ca), _without_build_config(cb))
        if diff:
            problems.append(f"model get_config differs at {diff}")
    fail_if(problems, "identity rewrite is not an exact copy")


def class_problems(original, new, what="the rewritten model"):
    """A model whose class saves itself as constructor arguments (KerasHub backbones and
    tasks) stays an instance of its class, and a task's backbone of its own (issue 17)."""
    cls = type(original)
    if cls in (keras.Model, keras.Sequential) or cls.get_config is keras.Model.get_config \
            or cls.__module__.startswith("keras.src."):
        return []
    problems = [] if isinstance(new, cls) else [
        f"{what} is a {type(new).__name__}, expected a {cls.__name__}"]
    backbone = getattr(original, "backbone", None)
    if isinstance(backbone, keras.Model) and not isinstance(getattr(new, "backbone", None),
                                                             type(backbone)):
        problems.append(f"{what}'s backbone is a {type(getattr(new, 'backbone', None)).__name__},"
                        f" expected a {type(backbone).__name__}")
    return problems


def generate_problems(original, result, x):
    """A CausalLM (no preprocessor here: token ids in) generates the same greedy tokens after
    the rewrite, or refuses generate() where the report says a pass changed the wiring."""
    if not callable(getattr(original, "generate", None)) or not isinstance(x, dict):
        return []
    from keras_rewrite.errors import RewriteError
    import keras_hub

    new, refused = result.model, any("generate() is refused" in n for n in result.report.notes)
    prompt = {k: x[k] for k in ("token_ids", "padding_mask")}
    kept = original.sampler
    try:
        original.sampler = new.sampler = keras_hub.samplers.GreedySampler()
        expected = original.generate(prompt, stop_token_ids=None)
        try:
            received = new.generate(prompt, stop_token_ids=None)
        except RewriteError as exc:
            return [] if refused and "refused" in str(exc) else [f"generate(): {exc}"]
    finally:
        original.sampler = kept
    if refused:
        return ["generate() ran, though the report says it is refused"]
    return [f"generate(): {d}" for d in output_differences(expected, received, "generate")]


def _variables(model):
    return [(v.path, str(v.dtype), tuple(v.shape), bool(v.trainable),
             bool(getattr(v, "overwrite_with_gradient", False)),
             np.asarray(keras.ops.convert_to_numpy(v)).tobytes()) for v in model.weights]


def _layer_states(model):
    return [(type(l).__name__, l.dtype_policy.name, getattr(l, "quantization_mode", None),
             bool(l.trainable),
             getattr(l, "lora_rank", None) if getattr(l, "lora_enabled", False) else None)
            for l in model._flatten_layers(include_self=False, recursive=True)
            if not isinstance(l, keras.layers.InputLayer)]


def check_state(model, x):
    """The state contract (issue 16): `rewrite(model)` keeps every variable (path, dtype,
    shape, trainable, overwrite_with_gradient, the bytes) in order and every layer's class,
    policy, quantization mode, trainable flag and LoRA rank at every depth; after ["l2"] the
    same variables are trainable and the original is unchanged."""
    before = _variables(model)
    same = keras_rewrite.rewrite(model)
    problems = []
    if _variables(same) != before:
        problems.append(first_difference(before, _variables(same), "variables") or
                        "variables differ")
    if _layer_states(same) != _layer_states(model):
        problems.append(first_difference(_layer_states(model), _layer_states(same), "layers")
                        or "layer states differ")
    regularized = keras_rewrite.rewrite(model, ["l2"])
    if [v.path for v in regularized.trainable_weights] != [v.path for v in
                                                           model.trainable_weights]:
        problems.append("after l2 other variables are trainable")
    if _variables(model) != before:
        problems.append("the original's variables changed")
    fail_if(problems, "state not kept")


def check_passes(model, x):
    """All three passes run; outputs equal where the report says they are unchanged; a
    KerasHub model stays its class."""
    result = keras_rewrite.rewrite_with_report(model, ALL_PASSES)
    unchanged = result.report.outputs_unchanged
    problems = compare_outputs(model, result.model, x, values=unchanged is True)
    problems += class_problems(model, result.model)
    problems += generate_problems(model, result, x)
    fail_if(problems, f"after {'+'.join(ALL_PASSES)} (report: outputs_unchanged={unchanged})")


def check_l2_coverage(model, x=None):
    """rewrite(model, ["l2"]) puts L2 on every trainable kernel, sublayers' included (in the
    layer's config and on the variable, so that it counts in the loss)."""
    new = keras_rewrite.rewrite(model, ["l2"])
    kernels = kernel_layers(new)
    if not kernels:
        raise NotApplicable("no trainable weight kernel")
    missing, names = [], layer_names(new)
    for path, layer, key, variable in kernels:
        config, _ = _safe_config(layer)
        if config.get(key) is None or getattr(variable, "regularizer", None) is None:
            where = "config" if config.get(key) is None else "variable"
            missing.append(f"{names[path]} ({key.split('_')[0]}, not in {where})")
    fail_if(missing, f"{len(missing)} of {len(kernels)} kernels without L2")


def saved_and_loaded(new, original, tmp_dir, file_name, unsafe=False, notes=()):
    """`new` saved as `file_name` in `tmp_dir` and loaded back. NotApplicable when loading
    fails and Keras cannot load `original` either, or the rewrite's report `notes` said a
    file of it would not load."""
    path = pathlib.Path(tmp_dir) / file_name
    new.save(path)
    try:
        return keras.saving.load_model(path, safe_mode=not unsafe)
    except Exception as exc:
        original_error = keras_load_error(original, tmp_dir, unsafe)
        if original_error:
            raise NotApplicable(f"Keras itself cannot load the original back: "
                                f"{original_error}") from None
        if any("not load" in n for n in notes):
            raise NotApplicable(f"the report says a file of it will not load: "
                                f"{_first_line(str(exc), 80)}") from None
        raise


def check_save_load(model, x, tmp_dir, unsafe=False):
    """rewrite(model, ["l2"]) saved as .keras and loaded: same outputs, same L2 factors, a
    KerasHub model still its class."""
    new = keras_rewrite.rewrite(model, ["l2"])
    loaded = saved_and_loaded(new, model, tmp_dir, "rewritten.keras", unsafe)
    problems = class_problems(model, new) + class_problems(model, loaded, "the loaded model")
    if any(getattr(l, "lora_enabled", False) for l in model._flatten_layers()):
        # Keras saves LoRA merged into the kernel and no trainable flags: the file reloads as
        # Keras's own file of the original does, with L2 on top (README, "Quantized and LoRA").
        keras_own = saved_and_loaded(model, model, tmp_dir, "original.keras", unsafe)
        new = keras_rewrite.rewrite(keras_own, ["l2"])
    problems += compare_outputs(new, loaded, x)
    expected, received = regularizer_factors(new), regularizer_factors(loaded)
    names, loaded_names = layer_names(new), layer_names(loaded)
    for layer_path in expected:
        if expected[layer_path] != received.get(layer_path):
            keys = sorted(k for k in expected[layer_path]
                          if expected[layer_path][k] != (received.get(layer_path) or {}).get(k))
            problems.append(f"{names[layer_path]}: " + ", ".join(
                f"{k}={(received.get(layer_path) or {}).get(k)} (expected "
                f"{expected[layer_path].get(k)})" for k in keys[:2]))
    for layer_path in sorted(set(received) - set(expected)):
        problems.append(f"{loaded_names[layer_path]}: only in the loaded model")
    fail_if(problems, "the loaded model differs from the saved one")


EXPORT_PASSES = ["fold_batchnorm", "strip_inference"]


def check_export(model, x, tmp_dir, unsafe=False):
    """rewrite(model, ["fold_batchnorm", "strip_inference"]): outputs equal to the original's
    up to float32 rounding (bit-identical where the report says unchanged), and the file of it
    reloads with bit-identical outputs."""
    result = keras_rewrite.rewrite_with_report(model, EXPORT_PASSES)
    new = result.model
    exact = result.report.outputs_unchanged is True
    problems = compare_outputs(model, new, x, values=exact)
    if not exact:
        sync_seed_states(model, new)
        for want, got in zip(keras.tree.flatten(outputs(model, x)),
                             keras.tree.flatten(outputs(new, x))):
            want, got = np.asarray(want, "float64"), np.asarray(got, "float64")
            scale = max(1.0, float(np.nanmax(np.abs(want)))) if want.size else 1.0
            if want.shape == got.shape and not np.allclose(got, want, rtol=1e-4,
                                                           atol=1e-5 * scale):
                problems.append(f"outputs differ by {np.nanmax(np.abs(got - want)):.3g} "
                                f"(scale {scale:.3g}), more than float32 rounding")
    loaded = saved_and_loaded(new, model, tmp_dir, "exported.keras", unsafe)
    problems += compare_outputs(new, loaded, x)
    fail_if(problems, f"after {'+'.join(EXPORT_PASSES)} (report: outputs_unchanged="
                      f"{result.report.outputs_unchanged})")


def check_mixed_precision(model, x, tmp_dir, unsafe=False):
    """rewrite(model, [SetDtypePolicy("mixed_bfloat16")]): every layer computes in bfloat16
    but those the report keeps in float32 (with a reason), every variable is still float32
    and carried bit for bit, and the file of it reloads with the same policies and
    bit-identical outputs."""
    try:
        result = keras_rewrite.rewrite_with_report(
            model, [keras_rewrite.passes.SetDtypePolicy("mixed_bfloat16")])
    except keras_rewrite.RebuildError as exc:
        # A custom layer whose own call mixes float32 and bfloat16 tensors (the keras.io
        # VAE's Sampling draws float32 noise): the rewrite names it; nothing to check after.
        if "could not be called" in str(exc) and "keras.src" not in str(exc):
            raise NotApplicable(f"a custom layer cannot compute in mixed_bfloat16: "
                                f"{_first_line(str(exc), 90)}") from None
        raise
    new = result.model
    kept = {c.layer for p in result.report.passes for c in p.changes
            if c.action in ("kept_float32", "skipped")}
    problems = compare_outputs(model, new, x, values=False)
    for layer in all_layers(new):
        policy = getattr(layer, "dtype_policy", None)
        if policy is None or isinstance(layer, (keras.layers.InputLayer, keras.Model)):
            continue
        if policy.name != "mixed_bfloat16" and layer.name not in kept:
            problems.append(f"{layer.name}: policy {policy.name}, not mixed_bfloat16 and not "
                            "reported as kept")
    old_weights = {v.path: v for v in model.weights}
    for v in new.weights:
        if v.dtype != "float32" and old_weights.get(v.path) is not None and \
                old_weights[v.path].dtype == "float32":
            problems.append(f"variable {v.path} is {v.dtype}, expected float32")
    loaded = saved_and_loaded(new, model, tmp_dir, "mixed.keras", unsafe,
                              notes=result.report.notes)
    if any(getattr(l, "lora_enabled", False) for l in model._flatten_layers()):
        # As in check_save_load: the file reloads as Keras's own file of the original does
        # (LoRA merged into the kernel), in mixed precision.
        keras_own = saved_and_loaded(model, model, tmp_dir, "original.keras", unsafe)
        new = keras_rewrite.rewrite(keras_own, [keras_rewrite.passes.SetDtypePolicy(
            "mixed_bfloat16")])
    problems += compare_outputs(new, loaded, x)

    def policies(m):  # in layer order: a KerasHub recipe reloads with new auto-names; an
        # InputLayer's policy is its data dtype's business, not compute's. A layer holding a
        # DTypePolicyMap (a loaded quantized KerasHub model) computes with its path's entry;
        # compared by what they do: Keras's file of a quantized KerasHub model names its
        # policies "int4/128_from_None" (it writes source_name null), same dtypes.
        def own(layer):
            policy = layer.dtype_policy
            if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
                policy = policy[layer.path] if layer.path else policy.default_policy
            return (policy.quantization_mode, policy.compute_dtype, policy.variable_dtype)
        return [(type(l).__name__, own(l)) for l in all_layers(m)
                if not isinstance(l, keras.layers.InputLayer)]

    saved, reloaded = policies(new), policies(loaded)
    if saved != reloaded:
        at = next(i for i, (a, b) in enumerate(zip(saved + [None], reloaded + [None]))
                  if a != b)
        problems.append(f"policies reload differently from layer {at}: "
                        f"{reloaded[at:at + 2]}, saved as {saved[at:at + 2]}")
    fail_if(problems, "after SetDtypePolicy('mixed_bfloat16')")


def keras_load_error(model, tmp_dir, unsafe=False, path=None):
    """None if Keras loads `model` back from a .keras file (saved to `path`, or to a new file
    in `tmp_dir`), else the first line of the error."""
    try:
        if path is None:
            path = pathlib.Path(tmp_dir) / "original.keras"
            model.save(path)
        keras.saving.load_model(path, safe_mode=not unsafe)
    except Exception as exc:  # noqa: BLE001 — what Keras says is the answer
        return f"{type(exc).__name__}: {_first_line(str(exc), 100)}"
    return None


def _first_line(text, width=160):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= width else line[:width - 1] + "…"


def check_fit(name):
    """One fit step of a fresh build with RewriteCallback(["l2"]) on tiny random data."""
    entry = ZOO[name]
    model, x = build(name)
    out = outputs(model, x)
    if _has_integer_outputs(out):
        raise NotApplicable("integer outputs: no loss to train them with")
    if not getattr(model, "compiled", False):
        # Tracing the train step of a model of several hundred layers takes 15-35 s
        # (NASNetMobile, InceptionResNetV2, DenseNet121, InceptionV3): those train eagerly,
        # which keeps the zoo within its time budget; the traced path (the callback acting
        # before the first trace) is exercised by every other model.
        model.compile(optimizer=keras.optimizers.SGD(1e-3),
                      loss=keras.tree.map_structure(lambda _: "mse", out),
                      run_eagerly=len(all_layers(model)) > EAGER_FIT_ABOVE_LAYERS)
    rng = _rng(7)
    y = (entry.targets(model, x, out) if entry.targets else
         keras.tree.map_structure(lambda o: rng.random(np.shape(o)).astype("float32"), out))
    callback = keras_rewrite.RewriteCallback(["l2"])
    batch_size = len(keras.tree.flatten(x)[0])
    if any(np.asarray(a).dtype.kind in "USO" for a in keras.tree.flatten(x)):
        # Keras's NumPy adapter refuses string arrays ("Invalid dtype: str192"); keras.io
        # feeds text as a tf.data.Dataset.
        import tensorflow as tf
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
        history = model.fit(data, epochs=1, verbose=0, callbacks=[callback])
    else:
        history = model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0,
                            callbacks=[callback])
    loss = history.history["loss"][-1]
    problems = []
    if not np.isfinite(loss):
        problems.append(f"loss is {loss}")
    if not callback.results:
        problems.append("the callback recorded no pass result")
    regularized = [v for _, _, _, v in kernel_layers(model)
                   if getattr(v, "regularizer", None) is not None]
    if kernel_layers(model) and not regularized:
        problems.append("no kernel got a regularizer during fit")
    elif regularized and not model.losses:
        problems.append("kernels are regularized but model.losses is empty")
    fail_if(problems, "fit with RewriteCallback(['l2'])")


def run_cli(argv):
    """keras_rewrite.cli.entry.main in this process: (exit code, stdout, stderr)."""
    from keras_rewrite.cli import entry as cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
    return code, out.getvalue(), err.getvalue()


def _last_line(text):
    """The last line on stderr, without the "keras-rewrite: error: FILE: " prefix."""
    lines = [l for l in text.strip().splitlines() if l.strip()]
    if not lines:
        return "(nothing on stderr)"
    line = lines[-1]
    if line.startswith("keras-rewrite: error: ") and ".keras: " in line:
        line = line.split(".keras: ", 1)[1]
    return line


def check_cli(model, tmp_dir, unsafe=False):
    """`keras-rewrite convert in.keras -o out.keras --l2 1e-4` exits 0 and writes out.keras;
    `keras-rewrite lint in.keras` exits 0 (no findings) or 1 (findings)."""
    tmp_dir = pathlib.Path(tmp_dir)
    src, dst = tmp_dir / "in.keras", tmp_dir / "out.keras"
    model.save(src)
    # The zoo's custom layers register under "zoo" (this module; tests/ is on sys.path).
    extra = ["--custom-objects", __name__] + (["--unsafe"] if unsafe else [])
    code, _, err = run_cli(["convert", src, "-o", dst, "--l2", "1e-4", *extra])
    # An input Keras itself cannot load (a layer without a complete get_config) is exit 3,
    # "an input is ... unreadable, not a Keras model", for convert and lint alike.
    unloadable = keras_load_error(model, tmp_dir, unsafe, path=src) if code != 0 else None
    if code == 5 and "a Keras limitation" in err:
        # Keras 3.15 cannot save the int8/int4 KerasHub model it reloads from a file.
        raise NotApplicable(f"Keras cannot save the model it loads from the file: "
                            f"{_last_line(err)[:80]}")
    expected = 3 if unloadable else 0
    problems = []
    if code != expected:
        problems.append(f"convert exit {code}, expected {expected}: {_last_line(err)}")
    elif code == 0 and not dst.is_file():
        problems.append("convert exit 0 but no output file")
    code, _, err = run_cli(["lint", src, *extra])
    if code not in ((3,) if unloadable else (0, 1)):
        problems.append(f"lint exit {code}, expected {3 if unloadable else '0 or 1'}: "
                        f"{_last_line(err)}")
    fail_if(problems, "CLI")


CHECKS = ["identity", "state", "passes", "l2_coverage", "save_load", "export",
          "mixed_precision", "fit_callback", "cli"]


def run_check(check, name, tmp_dir=None):
    """Run one named check on one zoo model (the tests' and the table's common entry point)."""
    entry = ZOO[name]
    if check == "fit_callback":
        return check_fit(name)
    model, x = get(name)
    if check == "identity":
        return check_identity(model, x)
    if check == "state":
        return check_state(model, x)
    if check == "passes":
        return check_passes(model, x)
    if check == "l2_coverage":
        return check_l2_coverage(model, x)
    own_tmp = None
    if tmp_dir is None:
        own_tmp = tempfile.TemporaryDirectory()
        tmp_dir = own_tmp.name
    try:
        if check == "save_load":
            return check_save_load(model, x, tmp_dir, unsafe=entry.unsafe)
        if check == "export":
            return check_export(model, x, tmp_dir, unsafe=entry.unsafe)
        if check == "mixed_precision":
            return check_mixed_precision(model, x, tmp_dir, unsafe=entry.unsafe)
        if check == "cli":
            return check_cli(model, tmp_dir, unsafe=entry.unsafe)
    finally:
        if own_tmp is not None:
            own_tmp.cleanup()
    raise ValueError(f"unknown check {check!r}; expected one of {CHECKS}")


# One or two models of each source, the small ones: a few minutes per backend
# (tools/zoo_table.py --quick), and the models CI runs the costly checks on (tests/test_zoo.py).
QUICK = ["ResNet50", "MobileNetV2", "EfficientNetB0", "VGG16", "BertBackbone", "GPT2Backbone",
         "LlamaBackbone", "ResNetBackbone", "BertTextClassifier", "transformer_text_with_config",
         "vae_encoder", "siamese_registered_distance", "unet_keras_io", "bilstm_mask_zero",
         "mha_functional", "timeseries_conv1d", "normalization_adapted",
         "string_lookup_adapted", "text_vectorization_adapted", "dict_outputs_unsorted",
         "channels_first_cnn", "shared_layers_and_ops", "seed_unet_lambda", "seed_cnn"]
