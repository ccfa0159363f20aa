"""Your own model, through the CLI: a labelled CSV and a local base model folder (both built here)
-> `distill teacher` -> `distill student` -> `import` of another folder; cards and errors checked.

Tiny models from transformers configs (BERT and DistilBERT), a few hundred rows: seconds, no hub.
"""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import (
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from distill.models import tiny_teacher, tiny_vocab
from distilserve.cli.main import main
from distilserve.core.card import ModelCard

ROOT = Path(__file__).resolve().parents[2]
LABELS = ("sports", "weather")  # sorted: the order the teacher must pick without --labels
WORDS = {
    "sports": ["goal", "match", "team", "score", "league", "coach", "win", "player"],
    "weather": ["rain", "storm", "sunny", "cloud", "wind", "snow", "forecast", "cold"],
}
FILLER = ["the", "a", "today", "was", "very", "and", "then", "we", "saw", "it"]


def _texts(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = LABELS[i % 2]
        words = rng.sample(WORDS[topic], 3) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"body": " ".join(words) + f" {i}", "topic": topic, "extra": i})
    return pd.DataFrame(rows)


def _vocab_words() -> list[str]:
    return [w for ws in WORDS.values() for w in ws] + FILLER


def _save(model: torch.nn.Module, tokenizer: BertTokenizerFast, where: Path) -> Path:
    model.save_pretrained(where, safe_serialization=True)
    tokenizer.save_pretrained(where)
    return where


def _bert_folder(where: Path, labels: tuple[str, ...], seed: int = 0) -> Path:
    model, tokenizer = tiny_teacher(_vocab_words(), labels=labels, seed=seed)
    return _save(model, tokenizer, where)


def _distilbert_folder(where: Path) -> Path:
    torch.manual_seed(0)
    vocab = tiny_vocab(_vocab_words())
    # DistilBERT takes no token_type_ids, as its real tokenizers say.
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True,
                                  model_input_names=["input_ids", "attention_mask"])
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                              max_position_embeddings=128, num_labels=3)
    return _save(DistilBertForSequenceClassification(config), tokenizer, where)


def _cli(*args: object) -> int:
    return main([str(a) for a in args])


def _classifier(repo: Path, model: str, version: str):  # noqa: ANN202 - model.py's Classifier
    spec = importlib.util.spec_from_file_location(f"tmp_{model}_model", repo / model / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Classifier(repo / model / version)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CSV, a BERT base folder, and `topics/1` trained from them through the CLI."""
    where = tmp_path_factory.mktemp("own")
    csv = where / "topics.csv"
    _texts(300, seed=0).to_csv(csv, index=False)
    base = _bert_folder(where / "base-bert", labels=("x", "y", "z"))  # a classifier head of another size
    repo = where / "repo"
    rc = _cli("distill", "teacher", "--model", "topics", "--data", csv, "--text-column", "body",
              "--label-column", "topic", "--base-model", base, "--max-seq-len", "32", "--epochs", "2",
              "--repo", repo)
    assert rc == 0
    return {"where": where, "csv": csv, "base": base, "repo": repo}


def test_teacher_card_records_data_source_split_and_selection(own: dict[str, Path]) -> None:
    card = ModelCard.read(own["repo"] / "topics" / "1")
    assert (card.kind, card.model, card.labels) == ("teacher", "topics", list(LABELS))
    src = card.data_source
    assert src is not None
    assert (src.path, src.format, src.text_column, src.label_column, src.labels) == (
        str(own["csv"].resolve()), "csv", "body", "topic", list(LABELS))
    # Defaults for a file: 10% test, 10% validation, the rest train.
    assert src.split == {"test_size": 30, "val_size": 30, "train_size": 240, "seed": 0}
    assert card.eval_examples == 30
    assert card.validation_accuracy is not None
    assert card.lineage.config["selected_on"] == "validation" and card.lineage.config["best_epoch"] in (1, 2)
    assert card.lineage.base_model == str(own["base"].resolve())
    assert card.lineage.data_fingerprint.startswith("sha256:")
    assert {s.batch_size for s in card.latency} == {1, 32}
    # The new model folder got Triton's files, named for it.
    assert 'name: "topics"' in (own["repo"] / "topics" / "config.pbtxt").read_text()
    probs, labels = _classifier(own["repo"], "topics", "1").predict(["goal match team", "rain storm"])
    assert probs.shape == (2, 2) and set(labels) <= set(LABELS)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--text-column", "text"], "text column 'text' is not in .*columns present: "
                     r"\['body', 'topic', 'extra'\]", id="missing-column"),
        pytest.param(["--text-column", "body", "--labels", "sports,politics"],
                     r"150 rows .* label not in --labels \['sports', 'politics'\]; first: row 1: 'weather'",
                     id="label-outside-labels"),
        pytest.param(["--text-column", "body", "--label-column", "extra", "--test-size", "500"],
                     r"do not fit the 300 usable rows", id="sizes-too-big"),
    ],
)
def test_teacher_refuses_bad_input_before_training(own: dict[str, Path], extra: list[str], message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--label-column", "topic", *extra] if "--label-column" not in extra else extra
    rc = _cli("distill", "teacher", "--model", "topics", "--data", own["csv"], "--base-model", own["base"],
              "--repo", own["repo"], *args)
    err = capsys.readouterr().err
    assert rc == 2
    assert re.search(message, err), err
    assert not (own["repo"] / "topics" / "2").exists()


def test_teacher_refuses_single_label_and_missing_file(own: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    one = own["where"] / "one.jsonl"
    _texts(20, seed=1).assign(topic="sports").to_json(one, orient="records", lines=True)
    for data, message in ((one, "need at least 2 classes"), (own["where"] / "nope.csv", "does not exist")):
        rc = _cli("distill", "teacher", "--model", "topics", "--data", data, "--text-column", "body",
                  "--label-column", "topic", "--repo", own["repo"], "--quick")
        assert rc == 2 and message in capsys.readouterr().err


def test_student_reads_its_teachers_data_source(own: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "small.yaml"
    # Shares, not counts: the same recipe fits 300 rows or 40,000.
    recipe.write_text(
        "name: small\nstudent: {layers: [0]}\n"
        "training: {epochs: 1, batch_size: 16, lr: 1.0e-3, max_seq_len: 32, seeds: [0, 1]}\n"
        "data: {train_size: 0.5, test_size: 1.0, val_size: 1.0}\nteacher_version: '1'\n"
    )
    rc = _cli("distill", "student", "--model", "topics", "--config", recipe, "--repo", own["repo"], "--quick",
              "--cache-dir", tmp_path / "cache")
    assert rc == 0
    teacher = ModelCard.read(own["repo"] / "topics" / "1")
    card = ModelCard.read(own["repo"] / "topics" / "2")
    assert (card.kind, card.labels, card.lineage.teacher_version) == ("student", list(LABELS), "1")
    assert card.data_source == teacher.data_source
    assert card.lineage.data_fingerprint == teacher.lineage.data_fingerprint
    assert card.eval_examples == 30 and len(card.accuracy_seeds) == 2
    assert card.lineage.config["selected_on"] == "validation"
    assert card.validation_accuracy is not None
    assert card.parameters < teacher.parameters


def test_non_bert_teacher_works_and_unsupported_students_are_named(own: dict[str, Path], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    base = _distilbert_folder(tmp_path / "base-distilbert")
    repo = tmp_path / "repo"
    rc = _cli("distill", "teacher", "--model", "topics-db", "--data", own["csv"], "--text-column", "body",
              "--label-column", "topic", "--labels", "weather,sports", "--base-model", base, "--max-seq-len", "32",
              "--repo", repo)
    assert rc == 0
    card = ModelCard.read(repo / "topics-db" / "1")
    assert card.labels == ["weather", "sports"]  # --labels fixes the order
    probs, _ = _classifier(repo, "topics-db", "1").predict(["sunny wind"])
    assert probs.shape == (1, 2)
    recipe = tmp_path / "narrow.yaml"
    recipe.write_text("name: narrow\nstudent: {layers: [0], hidden_size: 16, num_heads: 4, intermediate_size: 32}\n")
    rc = _cli("distill", "student", "--model", "topics-db", "--config", recipe, "--repo", repo, "--quick")
    err = capsys.readouterr().err
    assert rc == 2
    assert "['width'] not supported for a 'distilbert' teacher" in err and "width: ['bert']" in err
    assert not (repo / "topics-db" / "2").exists()


def test_import_measures_a_folder_and_refuses_pickles_and_other_labels(
    own: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    repo = own["repo"]
    src = _bert_folder(tmp_path / "mine", labels=LABELS, seed=3)
    before = sorted(p.name for p in (repo / "topics").iterdir() if p.name.isdigit())
    rc = _cli("import", "--model", "topics", "--from", src, "--eval", own["csv"], "--text-column", "body",
              "--label-column", "topic", "--repo", repo, "--max-seq-len", "32", "--latency-runs", "5")
    assert rc == 0
    version = str(max(int(v) for v in before) + 1)
    card = ModelCard.read(repo / "topics" / version)
    assert (card.kind, card.labels, card.eval_examples) == ("imported", list(LABELS), 300)
    assert 0 <= card.accuracy <= 1 and {s.batch_size for s in card.latency} == {1, 32}
    assert card.parameters > 0 and card.bytes == (repo / "topics" / version / "model.safetensors").stat().st_size
    assert card.data_source is not None and card.data_source.path == str(own["csv"].resolve())
    # Accuracy is measured, not copied: recompute it with the served code.
    rows = pd.read_csv(own["csv"])
    _, predicted = _classifier(repo, "topics", version).predict(list(rows["body"]))
    assert card.accuracy == pytest.approx(float(np.mean(np.array(predicted) == rows["topic"].to_numpy())))

    # Labels that differ from the model's versions: both lists in the message, nothing written.
    other = _bert_folder(tmp_path / "other", labels=("sports", "weather", "politics"))
    rc = _cli("import", "--model", "topics", "--from", other, "--eval", own["csv"], "--text-column", "body",
              "--label-column", "topic", "--repo", repo)
    err = capsys.readouterr().err
    assert rc == 2 and "['sports', 'weather', 'politics'] differ from version" in err and "['sports', 'weather']" in err

    # Pickle-only weights are refused before anything is loaded.
    pickled = tmp_path / "pickled"
    model, _ = tiny_teacher(_vocab_words(), labels=LABELS)
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    rc = _cli("import", "--model", "topics", "--from", pickled, "--eval", own["csv"], "--text-column", "body",
              "--label-column", "topic", "--repo", repo)
    err = capsys.readouterr().err
    assert rc == 2 and "only pickle weights ['pytorch_model.bin']" in err
    after = sorted(p.name for p in (repo / "topics").iterdir() if p.name.isdigit())
    assert after == sorted([*before, version])
