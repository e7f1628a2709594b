"""Small KerasHub *tasks* with real preprocessors and tiny tokenizers made here (no presets).

Each builder returns ``(task, raw)``: a task built from constructor arguments with its
preprocessor, and a batch of raw inputs (strings or uint8 images) that task accepts in
`predict`, `fit` (with labels where the task needs them) and, for a CausalLM, `generate`.
Nothing is downloaded: the GPT-2 vocabulary and merges are written below, Gemma's
SentencePiece model is trained here on six sentences, BERT's WordPiece vocabulary is a list.
"""
from __future__ import annotations

import io

import keras_rewrite  # noqa: F401,I001  (first: it quiets TensorFlow before keras imports it)

import keras
import numpy as np

SENTENCES = ["the quick brown fox", "the earth is round", "a fox is quick",
             "the brown earth", "round and round", "a quick brown earth"]
LABELS = np.array([0, 1, 0, 1, 1, 0])


def _hub():
    import keras_hub
    return keras_hub


def _bpe_vocabulary_and_merges():
    """A byte-pair vocabulary in which every word of SENTENCES is one token, merged letter by
    letter (GPT-2 writes a leading space as "Ġ"), and its merge rules."""
    words = {w for s in SENTENCES for w in s.split()}
    pieces = sorted({w for w in words} | {"Ġ" + w for w in words})
    vocab, merges = ["<|endoftext|>"], []
    for piece in pieces:
        for k in range(1, len(piece) + 1):
            prefix = piece[:k]
            if k > 1 and f"{piece[:k - 1]} {piece[k - 1]}" not in merges:
                merges.append(f"{piece[:k - 1]} {piece[k - 1]}")
            for token in (prefix, piece[k - 1]):
                if token not in vocab:
                    vocab.append(token)
    return {token: i for i, token in enumerate(vocab)}, merges


def gpt2_causal_lm():
    hub = _hub()
    vocab, merges = _bpe_vocabulary_and_merges()
    tokenizer = hub.models.GPT2Tokenizer(vocabulary=vocab, merges=merges)
    preprocessor = hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=8)
    backbone = hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=16)
    task = hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)
    task.compile(sampler="greedy")
    return task, SENTENCES


def _sentencepiece_proto(vocab_size=16):
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES), model_writer=out, vocab_size=vocab_size,
        model_type="WORD", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="<pad>",
        bos_piece="<bos>", eos_piece="<eos>", unk_piece="<unk>",
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"], minloglevel=2)
    return out.getvalue()


def gemma_causal_lm():
    hub = _hub()
    tokenizer = hub.models.GemmaTokenizer(proto=_sentencepiece_proto())
    preprocessor = hub.models.GemmaCausalLMPreprocessor(tokenizer, sequence_length=8)
    backbone = hub.models.GemmaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=8, intermediate_dim=16, head_dim=4)
    task = hub.models.GemmaCausalLM(backbone=backbone, preprocessor=preprocessor)
    task.compile(sampler="greedy")
    return task, SENTENCES


def bert_text_classifier():
    hub = _hub()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox",
             "earth", "is", "round", "a", "and"]
    tokenizer = hub.models.BertTokenizer(vocabulary=vocab)
    preprocessor = hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    backbone = hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8)
    task = hub.models.BertTextClassifier(backbone=backbone, num_classes=2,
                                         preprocessor=preprocessor)
    return task, SENTENCES


def resnet_image_classifier():
    hub = _hub()
    converter = hub.layers.ResNetImageConverter(image_size=(16, 16), scale=1 / 255.0)
    preprocessor = hub.models.ResNetImageClassifierPreprocessor(image_converter=converter)
    backbone = hub.models.ResNetBackbone(
        input_conv_filters=[8], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 8],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2],
        block_type="bottleneck_block", image_shape=(16, 16, 3))
    task = hub.models.ResNetImageClassifier(backbone=backbone, num_classes=2,
                                            preprocessor=preprocessor)
    images = np.random.default_rng(0).integers(0, 256, (6, 20, 20, 3)).astype("float32")
    return task, images


TASKS = {"GPT2CausalLM": gpt2_causal_lm, "GemmaCausalLM": gemma_causal_lm,
         "BertTextClassifier": bert_text_classifier,
         "ResNetImageClassifier": resnet_image_classifier}
