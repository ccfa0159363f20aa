"""Student builders on a tiny BERT and a tiny WordPiece vocabulary written in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    PreTrainedModel,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from distill.architectures import (
    SUPPORTED,
    build_student,
    count_parameters,
    narrow_student,
    prune_vocab,
    student_from_layers,
)
from distill.config import StudentSpec
from distill.errors import InputError

torch.set_num_threads(1)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "ran", "on",
         "mat", "sofa", "very", "good", "bad", "movie", "play", "##s", "##ed", "##ing", "un", "##happy",
         "!", ".", ",", "i", "love", "hate", "it", "was", "is", "not", "and", "but", "fun", "##ny"]
CORPUS = ["The cat sat on the mat.", "I love it, unhappy dogs played!", "Funny movie"]


def _teacher(vocab_size: int = len(VOCAB), layers: int = 4) -> BertForSequenceClassification:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=32, num_labels=3)
    return BertForSequenceClassification(cfg).eval()


@pytest.fixture
def tokenizer(tmp_path: Path) -> BertTokenizerFast:
    (tmp_path / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB), encoding="utf-8")
    return BertTokenizerFast.from_pretrained(tmp_path)


def _batch(tok: BertTokenizerFast, texts: list[str]) -> dict[str, torch.Tensor]:
    return dict(tok(texts, padding=True, return_tensors="pt"))


def test_keeping_all_layers_reproduces_the_teacher_exactly() -> None:
    teacher = _teacher()
    student = student_from_layers(teacher, [0, 1, 2, 3])
    ids = torch.randint(0, len(VOCAB), (3, 7))
    with torch.no_grad():
        assert torch.equal(student(input_ids=ids).logits, teacher(input_ids=ids).logits)
    assert not student.training


def test_first_and_last_copies_exactly_those_layers() -> None:
    teacher = _teacher()
    student = student_from_layers(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    for s_idx, t_idx in [(0, 0), (1, 3)]:
        s_state = student.bert.encoder.layer[s_idx].state_dict()
        t_state = teacher.bert.encoder.layer[t_idx].state_dict()
        assert s_state.keys() == t_state.keys()
        assert all(torch.equal(s_state[k], t_state[k]) for k in s_state)
    # Layer 1 of the student is not teacher layer 1 (they were initialised differently).
    assert not torch.equal(student.bert.encoder.layer[1].output.dense.weight,
                           teacher.bert.encoder.layer[1].output.dense.weight)
    for part in ("bert.embeddings", "bert.pooler", "classifier"):
        s_mod, t_mod = student.get_submodule(part), teacher.get_submodule(part)
        assert all(torch.equal(a, b) for a, b in zip(s_mod.state_dict().values(), t_mod.state_dict().values(), strict=True))
    assert count_parameters(student) < count_parameters(teacher)


def test_layer_order_is_kept() -> None:
    teacher = _teacher()
    student = student_from_layers(teacher, [2, 0])
    assert torch.equal(student.bert.encoder.layer[0].intermediate.dense.weight,
                       teacher.bert.encoder.layer[2].intermediate.dense.weight)


@pytest.mark.parametrize(("layers", "quoted"), [([0, 4], "layers [4] out of range for a teacher with 4 layers"),
                                                ([1, 1], "must not repeat, got [1, 1]"), ([], "at least one")])
def test_bad_layers_are_quoted(layers: list[int], quoted: str) -> None:
    with pytest.raises(ValueError) as err:
        student_from_layers(_teacher(), layers)
    assert quoted in str(err.value)


def test_narrow_student_projects_embeddings_onto_principal_directions() -> None:
    teacher = _teacher()
    student = narrow_student(teacher, [0, 3], hidden_size=16, num_heads=2, intermediate_size=32)
    cfg = student.config
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.num_hidden_layers) == (16, 2, 32, 2)
    t_words = teacher.bert.embeddings.word_embeddings.weight.detach()
    s_words = student.bert.embeddings.word_embeddings.weight.detach()
    assert s_words.shape == (len(VOCAB), 16)
    # Projecting onto the top-16 principal directions keeps exactly the top-16 variance:
    # total variance of the student columns = sum of the 16 largest eigenvalues of the covariance.
    eig = torch.linalg.eigvalsh(torch.cov(t_words.T)).flip(0)
    assert torch.isclose(torch.var(s_words, dim=0).sum(), eig[:16].sum(), rtol=1e-4)
    assert torch.var(s_words, dim=0).sum() < torch.var(t_words, dim=0).sum()
    with torch.no_grad():
        logits = student(input_ids=torch.randint(0, len(VOCAB), (2, 5))).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert count_parameters(student) < count_parameters(teacher)


@pytest.mark.parametrize(("kwargs", "quoted"), [({"hidden_size": 64, "num_heads": 4}, "hidden_size (64) must be <= the teacher's (32)"),
                                                ({"hidden_size": 15, "num_heads": 2}, "hidden_size (15) must be divisible by num_heads (2)")])
def test_narrow_student_rejects_bad_widths(kwargs: dict, quoted: str) -> None:
    with pytest.raises(ValueError) as err:
        narrow_student(_teacher(), [0], intermediate_size=32, **kwargs)
    assert quoted in str(err.value)


def test_prune_vocab_keeps_logits_and_shrinks_vocab(tokenizer: BertTokenizerFast, tmp_path: Path) -> None:
    teacher = _teacher()
    model, new_tok = prune_vocab(teacher, tokenizer, CORPUS)
    assert len(new_tok) < len(tokenizer) and model.config.vocab_size == len(new_tok)
    assert model.bert.embeddings.word_embeddings.num_embeddings == len(new_tok)
    assert set(tokenizer.all_special_tokens) <= set(new_tok.get_vocab())
    assert "sofa" not in new_tok.get_vocab() and teacher.config.vocab_size == len(VOCAB)  # input untouched
    old, new = _batch(tokenizer, CORPUS), _batch(new_tok, CORPUS)
    assert [tokenizer.convert_ids_to_tokens(r) for r in old["input_ids"]] == \
           [new_tok.convert_ids_to_tokens(r) for r in new["input_ids"]]
    assert not torch.equal(old["input_ids"], new["input_ids"])  # ids really were remapped
    with torch.no_grad():
        assert torch.allclose(teacher(**old).logits, model(**new).logits, atol=1e-6, rtol=0)
    # A word outside the kept vocabulary now falls back to [UNK].
    assert new_tok.convert_ids_to_tokens(new_tok("sofa")["input_ids"]) == ["[CLS]", "[UNK]", "[SEP]"]
    # The tokenizer is standard: saved and reloaded with AutoTokenizer it gives the same ids.
    new_tok.save_pretrained(tmp_path / "pruned")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "pruned")
    assert reloaded(CORPUS)["input_ids"] == new_tok(CORPUS)["input_ids"]
    assert model.config.pad_token_id == new_tok.pad_token_id


def test_build_student_dispatches_on_the_spec(tokenizer: BertTokenizerFast) -> None:
    teacher = _teacher()
    student, tok = build_student(teacher, StudentSpec(layers=[0, 3]))
    assert student.config.num_hidden_layers == 2 and tok is None
    spec = StudentSpec(layers=[0, 3], hidden_size=16, num_heads=2, intermediate_size=32, prune_vocab=True)
    student, tok = build_student(teacher, spec, tokenizer, CORPUS)
    assert student.config.hidden_size == 16 and tok is not None and len(tok) < len(VOCAB)
    with pytest.raises(ValueError, match="layers \\[4\\] out of range"):
        build_student(teacher, StudentSpec(layers=[4]))
    with pytest.raises(ValueError, match="needs the teacher tokenizer and the corpus texts"):
        build_student(teacher, StudentSpec(layers=[0], prune_vocab=True))


def test_count_parameters() -> None:
    lin = torch.nn.Linear(3, 2)  # 3*2 weights + 2 biases
    shared = torch.nn.Sequential(lin, lin)
    assert count_parameters(lin) == 8 and count_parameters(shared) == 8
    lin.bias.requires_grad_(False)
    assert count_parameters(lin, trainable_only=True) == 6


def _family(model_type: str) -> PreTrainedModel:
    torch.manual_seed(0)
    if model_type == "roberta":
        cfg = RobertaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=40, num_labels=2)
        return RobertaForSequenceClassification(cfg).eval()
    cfg = DistilBertConfig(vocab_size=50, dim=32, n_layers=3, n_heads=4, hidden_dim=64,
                           max_position_embeddings=40, num_labels=2)
    return DistilBertForSequenceClassification(cfg).eval()


@pytest.mark.parametrize("model_type", ["roberta", "distilbert"])
def test_layer_subsets_for_other_families(model_type: str) -> None:
    """SUPPORTED["layers"] lists these: all layers reproduce the teacher, a subset is smaller."""
    teacher = _family(model_type)
    assert model_type in SUPPORTED["layers"]
    ids = torch.tensor([[0, 5, 6, 7, 2]])
    same = student_from_layers(teacher, [0, 1, 2])
    torch.testing.assert_close(same(input_ids=ids).logits, teacher(input_ids=ids).logits)
    student, _ = build_student(teacher, StudentSpec(layers=[0, 2]))
    assert student.config.num_hidden_layers == 2
    assert count_parameters(student) < count_parameters(teacher)
    with pytest.raises(InputError, match=f"not supported for a '{model_type}' teacher"):
        build_student(teacher, StudentSpec(layers=[0], hidden_size=16, num_heads=4))
