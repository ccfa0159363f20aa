"""A replica's repository view: config.pbtxt read and written as Triton's ModelConfig protobuf."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as pb

from serving.triton.repo_view import (
    ModelConfigError,
    instance_count,
    make_view,
    patch_config,
    read_config,
    write_config,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "model_repository" / "sentiment" / "config.pbtxt"

CONFIG = '''name: "sentiment"
backend: "python"
instance_group [ { count: 1 kind: KIND_CPU } ]
version_policy: { latest: { num_versions: 2 } }
parameters: { key: "TORCH_NUM_THREADS" value: { string_value: "2" } }
'''


def test_the_shipped_config_round_trips() -> None:
    config = read_config(SHIPPED.read_text())
    assert config.name == "sentiment" and config.max_batch_size == 64
    assert read_config(write_config(config)) == config


def test_patch_pins_one_version_and_replaces_the_policy() -> None:
    out = read_config(patch_config(CONFIG, "7"))
    assert out.version_policy.WhichOneof("policy_choice") == "specific"
    assert list(out.version_policy.specific.versions) == [7]
    assert [g.kind for g in out.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
    assert out.parameters["TORCH_NUM_THREADS"].string_value == "2"


def test_patch_gpu_and_threads() -> None:
    out = read_config(patch_config(CONFIG, "1", gpu=True, torch_threads=4))
    assert [g.kind for g in out.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    assert out.parameters["TORCH_NUM_THREADS"].string_value == "4"


def test_threads_are_set_even_when_the_config_has_no_parameter() -> None:
    out = read_config(patch_config('name: "m"\nbackend: "python"\n', "1", torch_threads=3))
    assert out.parameters["TORCH_NUM_THREADS"].string_value == "3"


def test_patch_changes_nothing_else() -> None:
    before = read_config(SHIPPED.read_text())
    after = read_config(patch_config(SHIPPED.read_text(), "3"))
    after.ClearField("version_policy")
    assert after == before


@pytest.mark.parametrize("bad", ["0", "-1", "1/../2", "../1", "abc", ""])
def test_patch_rejects_bad_versions(bad: str) -> None:
    with pytest.raises(ValueError, match="version must be a positive integer"):
        patch_config(CONFIG, bad)


@pytest.mark.parametrize(
    "text",
    [
        'name: "m"\nmax_batch_size: "many"\n',  # wrong type
        'name: "m"\nno_such_field: 1\n',  # unknown field
        'name: "m"\ninstance_group [ { kind: KIND_TPU } ]\n',  # unknown enum value
        'name: "m"\ninput [ {\n',  # truncated
    ],
    ids=["wrong-type", "unknown-field", "unknown-enum", "truncated"],
)
def test_a_bad_config_raises_a_clear_error(text: str) -> None:
    with pytest.raises(ModelConfigError, match=r"^cfg\.pbtxt is not a valid Triton model config: \d+:\d+"):
        patch_config(text, "1", source="cfg.pbtxt")


def test_make_view_names_the_bad_file_and_writes_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text('name: "m"\nno_such_field: 1\n')
    with pytest.raises(ModelConfigError, match=str(repo / "m" / "config.pbtxt")):
        make_view(repo, "m", "1", tmp_path / "view")
    assert not (tmp_path / "view").exists()


@pytest.mark.parametrize(
    ("groups", "instances"),
    [
        ("", 1),  # no instance_group: Triton makes one
        ("instance_group [{ kind: KIND_CPU }]", 1),  # count unset: 1
        ("instance_group [{ count: 2 kind: KIND_CPU }]", 2),
        ("instance_group [{ count: 2 kind: KIND_CPU }, { count: 1 kind: KIND_CPU }]", 3),
        ("instance_group [{ count: 2 kind: KIND_GPU gpus: [0, 1] }]", 4),  # count per listed GPU
        ("instance_group [{ count: 3 kind: KIND_GPU }]", 3),  # per visible GPU: unknown here, counted once
    ],
)
def test_instance_count(groups: str, instances: int) -> None:
    assert instance_count(read_config(f'name: "m" backend: "python" {groups}')) == instances



@pytest.mark.parametrize(
    ("text", "gpu", "instances", "groups"),
    [
        (None, False, 2, [(2, pb.ModelInstanceGroup.KIND_CPU)]),  # the shipped config: count 1 -> 2
        (None, True, 3, [(3, pb.ModelInstanceGroup.KIND_GPU)]),  # gpu swaps the kind first
        ('name: "m" backend: "python"', False, 2, [(2, pb.ModelInstanceGroup.KIND_CPU)]),  # no group at all
        ('name: "m" backend: "python"', True, 1, [(1, pb.ModelInstanceGroup.KIND_GPU)]),
        ('name: "m" backend: "python" instance_group [{ count: 1 kind: KIND_CPU }, { count: 4 kind: KIND_CPU }]',
         False, 2, [(2, pb.ModelInstanceGroup.KIND_CPU)]),  # one group of exactly that many
        (None, False, None, [(1, pb.ModelInstanceGroup.KIND_CPU)]),  # None: the config's own
    ],
)
def test_patch_sets_the_instance_count(text: str | None, gpu: bool, instances: int | None, groups: list) -> None:
    out = read_config(patch_config(text or SHIPPED.read_text(), "1", gpu=gpu, instances=instances))
    assert [(g.count, g.kind) for g in out.instance_group] == groups
    assert instance_count(out) == (instances or 1)


def test_patch_refuses_zero_instances_quoting_the_value() -> None:
    with pytest.raises(ValueError, match="instances must be at least 1, got 0"):
        patch_config(CONFIG, "1", instances=0)
