"""A tiny end-to-end distillation: quick teacher -> quick student -> exported version 2 -> model.py."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from distill.config import DistillConfig, load_config
from distill.report import write_report
from distill.student import run_student, student_rows, teacher_splits
from distill.sweep import run_sweep
from distill.teacher import TeacherConfig, run_teacher
from distilserve.core.card import ModelCard

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with a quick tiny teacher as sentiment/1."""
    repo = tmp_path_factory.mktemp("repo")
    (repo / "sentiment").mkdir()
    for name in ("config.pbtxt", "model.py"):
        shutil.copy(ROOT / "model_repository" / "sentiment" / name, repo / "sentiment" / name)
    run_teacher(TeacherConfig.quick_defaults(), repo)
    return repo


def _load_model_py(repo: Path):  # noqa: ANN202 - a module loaded by path
    spec = importlib.util.spec_from_file_location("tmp_sentiment_model", repo / "sentiment" / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_student_exports_version_2(tiny_repo: Path, tmp_path: Path) -> None:
    cfg = load_config("quick")
    result = run_student(cfg, tiny_repo, seeds=[0, 1], quick=True, cache_dir=tmp_path / "cache")

    teacher = ModelCard.read(tiny_repo / "sentiment" / "1")
    version_dir = tiny_repo / "sentiment" / "2"
    assert result.version_dir == version_dir
    card = ModelCard.read(version_dir)
    assert card.kind == "student"
    assert card.version == "2"
    assert len(card.accuracy_seeds) == 2
    assert card.accuracy == pytest.approx(float(np.mean(card.accuracy_seeds)))
    assert card.lineage.teacher_version == "1"
    assert card.lineage.data_fingerprint == teacher.lineage.data_fingerprint
    assert card.lineage.base_model == teacher.lineage.base_model
    assert card.lineage.config["name"] == "quick"
    assert {s.batch_size for s in card.latency} == {1, 32}
    assert card.eval_examples == cfg.data.test_size
    # One layer kept out of the tiny teacher's two: strictly fewer parameters.
    assert card.parameters < teacher.parameters
    # The teacher was measured in the same run, at the same batch sizes.
    assert set(result.speedup) == {1, 32}
    assert result.accuracy_ratio == pytest.approx(result.accuracy / result.teacher_accuracy)

    clf = _load_model_py(tiny_repo).Classifier(version_dir)
    probs, labels = clf.predict(["good", "bad"])
    assert probs.shape == (2, len(card.labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert set(labels) <= set(card.labels)


def test_teacher_logits_are_cached_and_reused(tiny_repo: Path, tmp_path: Path) -> None:
    cfg = load_config("quick")
    first = run_student(cfg, tiny_repo, seeds=[0], export=False, quick=True, cache_dir=tmp_path)
    second = run_student(cfg, tiny_repo, seeds=[0], export=False, quick=True, cache_dir=tmp_path)
    assert (first.cache_hits, second.cache_hits) == (0, 1)
    assert len(list(tmp_path.glob("teacher-logits-*.safetensors"))) == 1
    # Same seed, same cached targets: the same student.
    assert second.accuracy_seeds == first.accuracy_seeds


def test_narrow_student_with_transfer_set_and_hidden_loss(tiny_repo: Path, tmp_path: Path) -> None:
    """Pruned vocabulary + hidden-state loss: the teacher runs on the fly through the id map."""
    cfg = DistillConfig.model_validate({
        **load_config("quick").model_dump(mode="json"),
        "name": "quick_narrow",
        # hidden 4: narrow_student projects embeddings onto principal directions, at most one per
        # vocabulary row, and the tiny teacher's vocabulary is small (see the report on models.py).
        "student": {"layers": [0, 1], "hidden_size": 4, "num_heads": 2, "intermediate_size": 8, "prune_vocab": True},
        "losses": [{"kind": "kd_kl", "weight": 0.6}, {"kind": "ce", "weight": 0.2},
                   {"kind": "hidden_mse", "weight": 0.2, "layer_map": [[0, 0], [1, 1]]}],
        "data": {"train_size": 100, "test_size": 50, "use_transfer_set": True, "transfer_size": 100},
    })
    result = run_student(cfg, tiny_repo, seeds=[0], export=False, quick=True, cache_dir=tmp_path)
    assert (result.train_rows, result.transfer_rows) == (100, 100)
    assert result.eval_examples == 50
    assert result.model is not None and result.model.config.hidden_size == 4
    # The pruned vocabulary is exactly the teacher ids the training rows use, plus the specials.
    teacher_tok = AutoTokenizer.from_pretrained(tiny_repo / "sentiment" / "1")
    splits = teacher_splits(ModelCard.read(tiny_repo / "sentiment" / "1"))
    rows = student_rows(cfg, splits)
    texts = list(rows.labeled["text"]) + list(rows.transfer["text"])
    used = {i for ids in teacher_tok(texts)["input_ids"] for i in ids} | set(teacher_tok.all_special_ids)
    assert result.tokenizer is not None and len(result.tokenizer) == result.model.config.vocab_size == len(used)
    # Two cached parts: labeled rows and transfer rows.
    assert len(list(tmp_path.glob("teacher-logits-*.safetensors"))) == 2


def test_quick_sweep_tabulates_and_exports_the_front(tiny_repo: Path, tmp_path: Path) -> None:
    result = run_sweep([load_config("quick")], [0], tiny_repo, export_best=True, quick=True, cache_dir=tmp_path)
    assert [r.kind for r in result.rows] == ["teacher", "baseline", "student"]
    student = result.rows[-1]
    assert student.name == "quick" and student.speedup_b1 is not None and student.accuracy_ratio is not None
    assert student.pareto == ("quick" in result.chosen)
    # Exactly the chosen students were exported, each as a new version with a student card.
    assert set(result.exported) == set(result.chosen)
    for version in result.exported.values():
        assert ModelCard.read(tiny_repo / "sentiment" / version).kind == "student"
    table, png = write_report(result.rows, tmp_path / "out")
    text = table.read_text()
    assert all(f"| {name} |" in text for name in ("teacher v1", "tfidf+logreg", "quick"))
    assert png.stat().st_size > 0
