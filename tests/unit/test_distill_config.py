"""DistillConfig: YAML loading, unknown keys, quoted bad values, hashing, shipped recipes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from pydantic import ValidationError

from distill.config import DataConfig, DistillConfig, StudentSpec, load_config, rows_for, shipped_configs
from distill.losses import LOSS_KINDS, CEConfig, HiddenMSEConfig, KDKLConfig

MINIMAL = {"name": "t", "student": {"layers": [0, 5]}}
MINILM = SimpleNamespace(num_hidden_layers=6, hidden_size=384, num_attention_heads=12)


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_four_recipes_ship() -> None:
    assert {"student_l2", "student_l1", "student_l2_narrow", "quick"} <= set(shipped_configs())


@pytest.mark.parametrize("name", sorted(shipped_configs()))
def test_every_shipped_yaml_loads_and_fits_the_teacher(name: str) -> None:
    cfg = load_config(name)
    assert cfg.name == name
    cfg.student.check_against_teacher(MINILM)


def test_shipped_recipes_say_what_they_promise() -> None:
    l2, l1, narrow, quick = (load_config(n) for n in ("student_l2", "student_l1", "student_l2_narrow", "quick"))
    assert l2.student.layers == [0, 5] and [c.kind for c in l2.losses] == ["kd_kl", "ce"]
    assert l1.student.layers == [0]
    assert narrow.student.hidden_size == 192 and narrow.student.prune_vocab and narrow.student.is_narrow
    assert any(isinstance(c, HiddenMSEConfig) for c in narrow.losses)
    assert quick.student.layers == [0] and quick.training.epochs == 1 and quick.data.train_size <= 500


def test_defaults_are_the_documented_kd_recipe() -> None:
    cfg = DistillConfig.model_validate(MINIMAL)
    assert cfg.losses == [KDKLConfig(weight=0.7, temperature=2.0), CEConfig(weight=0.3)]
    assert cfg.training.max_seq_len == 64 and cfg.teacher_version == "1"


def test_unknown_top_level_key_lists_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        DistillConfig.from_yaml(_write(tmp_path, {**MINIMAL, "epochs": 3}))
    msg = str(err.value)
    assert "['epochs']" in msg
    assert "valid keys: ['data', 'losses', 'name', 'student', 'teacher_version', 'training']" in msg


def test_unknown_nested_key_lists_that_sections_keys() -> None:
    with pytest.raises(ValidationError, match=r"\['hidden'\] in StudentSpec; valid keys: \['hidden_size', "):
        DistillConfig.model_validate({"name": "t", "student": {"layers": [0], "hidden": 192}})


def test_unknown_loss_kind_lists_valid_kinds() -> None:
    with pytest.raises(ValidationError) as err:
        DistillConfig.model_validate({**MINIMAL, "losses": [{"kind": "kl"}]})
    assert all(kind in str(err.value) for kind in LOSS_KINDS)


@pytest.mark.parametrize(
    ("data", "quoted"),
    [
        ({"student": {"layers": [0], "hidden_size": 100, "num_heads": 3}},
         "hidden_size (100) must be divisible by num_heads (3)"),
        ({"student": {"layers": [0, -1]}}, "got [-1] in [0, -1]"),
        ({"student": {"layers": [0, 0]}}, "must not repeat, got [0, 0]"),
        ({"data": {"use_transfer_set": True}}, "transfer_size is 0"),
        ({"data": {"transfer_size": 50}}, "transfer_size (50) is set but use_transfer_set is false"),
        ({"losses": [{"kind": "hidden_mse", "layer_map": [[0, 0], [5, 2]]}]},
         "student layers [2] in layer_map [(0, 0), (5, 2)] out of range for a student with 2 layers [0, 5]"),
        ({"training": {"seeds": []}}, "seeds"),
    ],
    ids=["heads-divide-width", "negative-layer", "repeated-layer", "transfer-without-size",
         "size-without-transfer", "layer-map-student", "no-seeds"],
)
def test_bad_values_are_quoted(data: dict, quoted: str) -> None:
    with pytest.raises(ValidationError) as err:
        DistillConfig.model_validate({**MINIMAL, **data})
    assert quoted in str(err.value)


@pytest.mark.parametrize(
    ("spec", "quoted"),
    [(StudentSpec(layers=[0, 6]), "layers [6] out of range for a teacher with 6 layers (valid: 0..5)"),
     (StudentSpec(layers=[0], hidden_size=100), "hidden_size (100) must be divisible by num_heads (12)")],
    ids=["layer-beyond-teacher", "width-vs-teacher-heads"],
)
def test_teacher_checks_at_build_time(spec: StudentSpec, quoted: str) -> None:
    with pytest.raises(ValueError) as err:
        spec.check_against_teacher(MINILM)
    assert quoted in str(err.value)


def test_yaml_round_trip_keeps_value_and_hash(tmp_path: Path) -> None:
    cfg = load_config("student_l2_narrow")
    path = tmp_path / "out.yaml"
    cfg.to_yaml(path)
    again = DistillConfig.from_yaml(path)
    assert again == cfg and again.config_hash() == cfg.config_hash()


def test_config_hash_is_canonical_and_sensitive() -> None:
    a = DistillConfig.model_validate(MINIMAL)
    # Same content, keys in another order and a default spelled out: same hash.
    b = DistillConfig.model_validate({"student": {"layers": [0, 5]}, "teacher_version": "1", "name": "t"})
    assert a.config_hash() == b.config_hash() and len(a.config_hash()) == 64
    c = DistillConfig.model_validate({**MINIMAL, "training": {"lr": 1e-4}})
    assert c.config_hash() != a.config_hash()


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a mapping at the top level, got list"):
        DistillConfig.from_yaml(path)


def test_load_config_unknown_name_lists_shipped() -> None:
    with pytest.raises(FileNotFoundError, match="student_l2"):
        load_config("student_l9")


@pytest.mark.parametrize(
    ("size", "available", "rows"),
    [
        pytest.param(1.0, 1600, 1600, id="all-of-a-small-split"),
        pytest.param(1.0, 32000, 32000, id="all-of-a-large-split"),
        pytest.param(0.5, 301, 150, id="half-rounds"),  # round(150.5) = 150 (banker's rounding)
        pytest.param(0.0001, 100, 1, id="tiny-share-at-least-one"),
        pytest.param(6000, 1600, 1600, id="count-capped-at-the-split"),
        pytest.param(200, 1600, 200, id="count"),
    ],
)
def test_recipe_sizes_are_counts_or_shares(size: float | int, available: int, rows: int) -> None:
    assert rows_for(DataConfig(train_size=size).train_size, available) == rows


@pytest.mark.parametrize("size", [0.0, 1.5, 0, -3])
def test_recipe_sizes_refuse_nonsense(size: float | int) -> None:
    with pytest.raises(ValidationError):
        DataConfig(train_size=size)
