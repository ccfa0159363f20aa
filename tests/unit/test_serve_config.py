"""ServeConfig validation: bad values are refused with a message quoting them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.config import AutoscalingSettings, ServeConfig
from serving.errors import describe_validation


def test_defaults_are_loopback_and_valid() -> None:
    cfg = ServeConfig()
    assert cfg.host == "127.0.0.1" and cfg.port == 8000 and cfg.models == ["sentiment"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas (2) must be >= min_replicas (3)"),
        ({"look_back_period_s": 1, "metrics_interval_s": 2}, "look_back_period_s (1.0) must be > metrics_interval_s (2.0)"),
        ({"target_ongoing_requests": 0}, "greater than 0"),
    ],
    ids=["max-below-min", "lookback-too-short", "zero-target"],
)
def test_autoscaling_errors_quote_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AutoscalingSettings(**kwargs)


def test_unknown_keys_and_yaml(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("port: 9000\nbackend: torch\nautoscaling: {max_replicas: 4}\n")
    cfg = ServeConfig.load(path, port=9100)
    assert cfg.port == 9100 and cfg.backend == "torch" and cfg.autoscaling.max_replicas == 4
    path.write_text("prot: 9000\n")
    with pytest.raises(ValidationError, match="prot"):
        ServeConfig.load(path)


def test_describe_validation_names_nested_fields() -> None:
    errors = [{"loc": ("body", "inputs", 2), "msg": "Input should be a valid string"}]
    assert describe_validation(errors) == "inputs[2]: Input should be a valid string"


def _switched_1_to_2(tmp_path: Path, clock: list[float], reason: str):  # noqa: ANN202 - a Registry
    """Model "m" with versions 1 and 2, traffic moved 1 -> 2 at t=clock[0]: 1 is the rollback target."""
    from serving.registry import Registry
    from tests.unit.test_registry import make_card

    reg = Registry(tmp_path / "r.db", clock=lambda: clock[0])
    for v in ("1", "2"):
        reg.register_version("m", v, tmp_path / "m" / v, make_card(v, model="m"))
    reg.set_traffic("m", {"1": 100}, reason="initial")
    reg.set_traffic("m", {"2": 100}, reason=reason)
    return reg


def test_rollback_target_stays_warm_only_within_the_window(tmp_path: Path) -> None:
    from serving.runner import desired_versions

    clock = [1000.0]
    reg = _switched_1_to_2(tmp_path, clock, "switch")  # at t=1000; rollback target is 1
    assert desired_versions(reg, "m", rollback_warm_s=60, now=1059) == {"1", "2"}  # 59 s < 60 s
    assert desired_versions(reg, "m", rollback_warm_s=60, now=1061) == {"2"}  # window over: scale down
    reg.set_warm("m", "1")
    assert desired_versions(reg, "m", rollback_warm_s=60, now=5000) == {"1", "2"}  # warm wins


def test_a_blue_green_scale_down_retires_the_old_colour_before_the_window(tmp_path: Path) -> None:
    from serving.runner import desired_versions

    clock = [1000.0]
    reg = _switched_1_to_2(tmp_path, clock, "blue-green switch")  # t=1000
    assert desired_versions(reg, "m", rollback_warm_s=900, now=1100) == {"1", "2"}
    clock[0] = 1120.0
    reg.record_event("m", "rollout.scale_down", "rollback window over", {"stable": "1"}, rollout_id="r1")
    assert desired_versions(reg, "m", rollback_warm_s=900, now=1130) == {"2"}  # the policy's window ruled
    clock[0] = 1200.0
    reg.set_traffic("m", {"1": 100}, reason="manual rollback")  # a newer change: the old event no longer applies
    assert desired_versions(reg, "m", rollback_warm_s=900, now=1210) == {"1", "2"}


@pytest.mark.parametrize(
    ("given", "ray_address", "expected"),
    [
        (None, None, "ingress"),  # local Ray: the ingress replica listens itself (the fast path)
        (None, "127.0.0.1:6379", "serve-proxy"),  # a cluster: Serve's proxy on the head reaches the ingress anywhere
        ("ingress", "127.0.0.1:6379", "ingress"),  # an explicit choice stands
        ("serve-proxy", None, "serve-proxy"),
    ],
)
def test_http_server_defaults_by_where_ray_runs(given: str | None, ray_address: str | None, expected: str) -> None:
    assert ServeConfig(http_server=given, ray_address=ray_address).http_server == expected


def test_unknown_http_server_is_refused_quoting_the_value() -> None:
    with pytest.raises(ValueError, match="haproxy"):
        ServeConfig(http_server="haproxy")


def test_model_names_follow_the_shared_pattern() -> None:
    with pytest.raises(ValidationError, match=r"models\.1(.|\n)*input_value='Bad Name'"):
        ServeConfig(models=["sentiment", "Bad Name"])


@pytest.mark.parametrize("attempts", [1, 3, 7])
def test_deploy_attempts_bound_a_broken_versions_failed_starts(attempts: int, tmp_path: Path) -> None:
    """Serve's own bound is min(its default 20, 3 x replicas); ours does not grow with min_replicas."""
    from serving.model_version import version_app

    cfg = ServeConfig(model_repository=tmp_path, deploy_attempts=attempts,
                      autoscaling={"min_replicas": 4, "max_replicas": 4})
    deployment = version_app(cfg, "sentiment", "1")._bound_deployment
    assert deployment._deployment_config.max_constructor_retry_count == attempts


def test_deploy_attempts_below_one_is_refused_quoting_the_value() -> None:
    with pytest.raises(ValidationError, match=r"deploy_attempts[\s\S]*input_value=0"):
        ServeConfig(deploy_attempts=0)


@pytest.mark.parametrize("key", ["calls_per_instance", "calls_per_triton"])
def test_calls_per_instance_reads_its_former_name_too(key: str) -> None:
    assert ServeConfig.model_validate({"batching": {key: 2}}).batching.calls_per_instance == 2
    with pytest.raises(ValidationError, match=r"input_value=0"):
        ServeConfig.model_validate({"batching": {key: 0}})


@pytest.mark.parametrize("instances", [None, 2])
def test_model_instances_reach_the_replica(instances: int | None, tmp_path: Path) -> None:
    from serving.model_version import version_app

    cfg = ServeConfig(model_repository=tmp_path, model_instances=instances, torch_threads=1)
    deployment = version_app(cfg, "sentiment", "1")._bound_deployment
    assert deployment.init_args[5:] == (1, instances, None)  # torch_threads, model_instances, model_cpus
    with pytest.raises(ValidationError, match=r"model_instances[\s\S]*input_value=0"):
        ServeConfig(model_instances=0)


def test_model_cpus_reach_the_replica(tmp_path: Path) -> None:
    from serving.model_version import version_app

    cfg = ServeConfig(model_repository=tmp_path, model_cpus="1-2")
    assert version_app(cfg, "sentiment", "1")._bound_deployment.init_args[7] == "1-2"
    with pytest.raises(ValidationError, match=r"model_cpus\n.*got '1\.5'"):
        ServeConfig(model_cpus="1.5")
