"""Student architectures built from a teacher ``*ForSequenceClassification`` model.

Which operation works for which family is a table (:data:`SUPPORTED`); any other architecture
gets an error naming it and what is supported, before anything is built.

- :func:`student_from_layers` keeps a subset of the teacher's encoder layers, weights copied.
- :func:`narrow_student` builds a fresh, narrower model; only the embeddings are derived from
  the teacher (projected onto their top principal directions), the encoder and head start random.
- :func:`prune_vocab` keeps only the tokens a corpus uses and returns a matching WordPiece tokenizer.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from transformers import BertTokenizerFast, PreTrainedModel, PreTrainedTokenizerBase

from distill.config import StudentSpec
from distill.errors import InputError

# Operation -> teacher `config.model_type`s it is built and tested for. MiniLM is "bert".
# Layer subsets copy `encoder.layer.<i>` / `transformer.layer.<i>` weights; narrowing assumes
# BERT's embeddings and config names; pruning rebuilds a WordPiece tokenizer as a BertTokenizerFast.
SUPPORTED: dict[str, frozenset[str]] = {
    "layers": frozenset({"bert", "roberta", "distilbert"}),
    "width": frozenset({"bert"}),
    "prune_vocab": frozenset({"bert"}),
}

# Encoder layers are ``<prefix>.encoder.layer.<i>.`` in BERT/RoBERTa/ELECTRA and
# ``<prefix>.transformer.layer.<i>.`` in DistilBERT.
_LAYER_KEY = re.compile(r"^(?P<head>(?:.*\.)?(?:encoder|transformer)\.layer\.)(?P<idx>\d+)(?P<tail>\..*)$")

# Config fields that hold token ids and must follow a vocabulary remap.
_TOKEN_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


def _check_layers(layers: Sequence[int], n_layers: int) -> list[int]:
    layers = list(layers)
    if not layers:
        raise ValueError("layers must name at least one teacher layer, e.g. [0, 5]")
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range for a teacher with {n_layers} layers (valid: 0..{n_layers - 1})")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers must not repeat, got {layers}")
    return layers


def student_from_layers(teacher: PreTrainedModel, layers: Sequence[int]) -> PreTrainedModel:
    """A student with the teacher's embeddings, pooler, classifier and the chosen encoder layers.

    Student layer ``j`` is a copy of teacher layer ``layers[j]``. Keeping every layer in order
    reproduces the teacher exactly. The student is in the teacher's train/eval mode.
    """
    layers = _check_layers(layers, teacher.config.num_hidden_layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    student = type(teacher)(config)
    new_index = {old: new for new, old in enumerate(layers)}
    state: dict[str, torch.Tensor] = {}
    for key, value in teacher.state_dict().items():
        match = _LAYER_KEY.match(key)
        if match is None:
            state[key] = value.clone()
        elif int(match["idx"]) in new_index:
            state[f"{match['head']}{new_index[int(match['idx'])]}{match['tail']}"] = value.clone()
    student.load_state_dict(state, strict=True)
    student.to(dtype=teacher.dtype)
    return student.train(teacher.training)


def _pca_basis(matrix: torch.Tensor, k: int) -> torch.Tensor:
    """``[H, k]`` orthonormal basis of the top-``k`` principal directions of the rows of ``matrix``."""
    centred = matrix.float() - matrix.float().mean(0, keepdim=True)
    # Right singular vectors of the centred matrix are the principal directions; the sign of
    # each is arbitrary, which is harmless since the encoder on top starts random.
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return vh[:k].T.contiguous()


def narrow_student(teacher: PreTrainedModel, layers: Sequence[int], hidden_size: int,
                   num_heads: int, intermediate_size: int) -> PreTrainedModel:
    """A fresh, narrower student with ``len(layers)`` encoder layers.

    Initialisation (the choice, and why): the word, position and token-type embeddings are the
    teacher's, projected onto the top-``hidden_size`` principal directions of the teacher's word
    embedding matrix (one shared projection, so their sum stays consistent). That keeps the most
    variance of the largest pretrained block. Encoder layers, pooler and classifier are randomly
    initialised: slicing attention weights across a width change breaks the head structure, so
    there is nothing sensible to copy. ``layers`` records which teacher layers the student stands
    for (the natural hidden-state ``layer_map`` is ``[[layers[j], j] ...]``) and sets the depth.
    """
    tcfg = teacher.config
    layers = _check_layers(layers, tcfg.num_hidden_layers)
    if hidden_size > tcfg.hidden_size:
        raise ValueError(f"hidden_size ({hidden_size}) must be <= the teacher's ({tcfg.hidden_size})")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
    config = copy.deepcopy(tcfg)
    config.num_hidden_layers = len(layers)
    config.hidden_size = hidden_size
    config.num_attention_heads = num_heads
    config.intermediate_size = intermediate_size
    student = type(teacher)(config)

    t_emb, s_emb = teacher.base_model.embeddings, student.base_model.embeddings
    basis = _pca_basis(t_emb.word_embeddings.weight.detach(), hidden_size)
    with torch.no_grad():
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            source, target = getattr(t_emb, name, None), getattr(s_emb, name, None)
            if source is not None and target is not None:
                target.weight.copy_(source.weight.float() @ basis)
    student.to(dtype=teacher.dtype)
    return student.train(teacher.training)


def prune_vocab(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                texts: Iterable[str]) -> tuple[PreTrainedModel, BertTokenizerFast]:
    """Keep the token ids the texts use plus the special tokens; remap embeddings and tokenizer.

    Kept tokens keep their relative order, so ``[PAD]`` stays first in a BERT vocabulary. The new
    tokenizer is a standard ``BertTokenizerFast`` built from the kept WordPiece vocabulary: on the corpus
    texts it produces the same wordpieces as before, because greedy longest-match WordPiece over
    a subset that contains every piece it originally chose makes the same choices. Words outside
    the kept vocabulary may now fall back to ``[UNK]``.

    Returns:
        A pruned deep copy of ``model`` and the new tokenizer; the inputs are not modified.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "WordPiece":
        raise ValueError(f"prune_vocab supports WordPiece (BERT) tokenizers only, got {type(tokenizer).__name__}")
    if model.get_output_embeddings() is not None:
        raise ValueError("prune_vocab supports models without an output (LM) head, e.g. *ForSequenceClassification")

    encoded = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    used = {i for ids in encoded for i in ids} | set(tokenizer.all_special_ids)
    kept = sorted(used)
    old_to_new = {old: new for new, old in enumerate(kept)}
    tokens = tokenizer.convert_ids_to_tokens(kept)

    pruned = copy.deepcopy(model)
    old_emb = pruned.get_input_embeddings()
    pad = pruned.config.pad_token_id
    new_emb = nn.Embedding(len(kept), old_emb.embedding_dim, padding_idx=old_to_new.get(pad) if pad is not None else None,
                           dtype=old_emb.weight.dtype, device=old_emb.weight.device)
    with torch.no_grad():
        new_emb.weight.copy_(old_emb.weight[torch.tensor(kept, device=old_emb.weight.device)])
    pruned.set_input_embeddings(new_emb)
    pruned.config.vocab_size = len(kept)
    for field in _TOKEN_ID_FIELDS:
        value = getattr(pruned.config, field, None)
        if value is not None:
            # An id the corpus never uses and that is not special has no row any more.
            setattr(pruned.config, field, old_to_new.get(value))

    # transformers 5's BertTokenizer takes the vocabulary as a mapping (a ``vocab_file`` keyword
    # is only honoured by from_pretrained); save_pretrained then writes standard files.
    new_tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, **_tokenizer_kwargs(tokenizer))
    if len(new_tok) != len(kept):
        raise RuntimeError(f"pruned tokenizer has {len(new_tok)} tokens, expected {len(kept)}")
    return pruned, new_tok


def _tokenizer_kwargs(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Normalisation and special-token settings carried over to the pruned tokenizer."""
    kwargs: dict[str, Any] = {
        "do_lower_case": getattr(tokenizer, "do_lower_case", True),
        "model_max_length": tokenizer.model_max_length,
    }
    for name in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            kwargs[name] = str(value)
    for name in ("tokenize_chinese_chars", "strip_accents"):
        if hasattr(tokenizer, name):
            kwargs[name] = getattr(tokenizer, name)
    return kwargs


def operations(spec: StudentSpec) -> list[str]:
    """The operations of SUPPORTED a spec asks for, in table order."""
    wanted = {"layers": True, "width": spec.is_narrow, "prune_vocab": spec.prune_vocab}
    return [op for op in SUPPORTED if wanted[op]]


def check_supported(model_type: str, spec: StudentSpec) -> None:
    """Raise InputError naming `model_type` and what is supported when `spec` needs an unsupported operation."""
    bad = [op for op in operations(spec) if model_type not in SUPPORTED[op]]
    if bad:
        table = "; ".join(f"{op}: {sorted(types)}" for op, types in SUPPORTED.items())
        raise InputError(
            f"student operation(s) {bad} not supported for a {model_type!r} teacher; supported "
            f"architectures per operation: {table}"
        )


def build_student(teacher: PreTrainedModel, spec: StudentSpec,
                  tokenizer: PreTrainedTokenizerBase | None = None,
                  texts: Iterable[str] | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Build the student a :class:`~distill.config.StudentSpec` describes.

    Returns the student and its tokenizer: the pruned one if ``spec.prune_vocab``, else
    ``tokenizer`` unchanged (possibly None).
    """
    check_supported(teacher.config.model_type, spec)
    spec.check_against_teacher(teacher.config)
    if spec.is_narrow:
        tcfg = teacher.config
        student = narrow_student(
            teacher, spec.layers,
            hidden_size=spec.hidden_size or tcfg.hidden_size,
            num_heads=spec.num_heads or tcfg.num_attention_heads,
            intermediate_size=spec.intermediate_size or tcfg.intermediate_size,
        )
    else:
        student = student_from_layers(teacher, spec.layers)
    if not spec.prune_vocab:
        return student, tokenizer
    if tokenizer is None or texts is None:
        raise ValueError("prune_vocab: true needs the teacher tokenizer and the corpus texts")
    return prune_vocab(student, tokenizer, texts)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
