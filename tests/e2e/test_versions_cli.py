"""`distilserve versions list|show|diff|prune` and `distilserve history`, run as a user would:
a subprocess on a registry file and a real (tiny) model repository. The read-only commands read
the file; `prune` changes state, so it goes through a running server's admin API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.registry import Registry
from serving.runner import register_repository
from tests.helpers import build_tiny_repo, serve_process

MODEL = "sentiment"
TOKEN = "versions-e2e-token"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Versions 1 and 2 trained with different seeds; 3 and 4 copies of 2 (only the number differs)."""
    repo = build_tiny_repo(tmp_path_factory.mktemp("repo"), versions=2)
    for v in ("3", "4"):
        dst = repo / MODEL / v
        shutil.copytree(repo / MODEL / "2", dst)
        card = json.loads((dst / "card.json").read_text())
        card["version"] = v
        (dst / "card.json").write_text(json.dumps(card))
    return repo


@pytest.fixture()
def env(repo: Path, tmp_path: Path) -> dict:
    """A fresh registry per test with a history: 1 live, a canary of 2, 2 promoted."""
    work = tmp_path / "repo"
    shutil.copytree(repo, work, symlinks=True)  # prune deletes folders: never the shared copy
    db = tmp_path / "registry.db"
    with Registry(db) as reg:
        register_repository(reg, work, MODEL)
        reg.set_traffic(MODEL, {"1": 100}, reason="initial deployment", actor="serve")
        reg.set_traffic(MODEL, {"1": 90, "2": 10}, reason="canary step 1", actor="controller")
        reg.set_traffic(MODEL, {"2": 100}, reason="canary promoted", actor="controller")
    return {"repo": work, "db": db}


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "distilserve.cli.main", *args],
                         capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def versions(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return cli("versions", *args, "--registry", str(env["db"]), check=check)


@pytest.fixture()
def server(env: dict, tmp_path: Path) -> Iterator[str]:
    """`distilserve serve` on the env's repository and registry (versions 2 live, 1 rollback target)."""
    args = ["--no-build", "--model-repository", str(env["repo"]), "--registry", str(env["db"])]
    with serve_process(args, tmp_path, {**os.environ, "DISTILSERVE_ADMIN_TOKEN": TOKEN}, tmp_path / "serve.log") as (_, url):
        yield url


def _row(text: str, version: str) -> str:
    return next(line for line in text.splitlines() if line.split()[:1] == [version])


def test_list_shows_status_role_and_traffic(env: dict) -> None:
    out = versions(env, "list", MODEL).stdout
    assert "4 versions, 4 deployable" in out
    assert "live 100%" in _row(out, "2")
    assert "rollback target" in _row(out, "1")
    assert _row(out, "4").split()[1] == "available"
    rows = json.loads(versions(env, "list", MODEL, "--json").stdout)
    assert [r["version"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[1]["roles"] == ["live 100%"] and rows[0]["roles"] == ["rollback target"]


def test_show_prints_lineage_and_config(env: dict) -> None:
    out = versions(env, "show", MODEL, "2").stdout
    rec = json.loads(versions(env, "show", MODEL, "2", "--json").stdout)
    lin = rec["card"]["lineage"]
    assert f"sha256:{lin['weights_sha256']}" in out
    assert lin["data_fingerprint"] in out and lin["config_hash"] in out and lin["code_commit"] in out
    assert "live 100%" in out
    assert any(line.split() == ["seed", "1"] for line in out.splitlines()), out
    bad = versions(env, "show", MODEL, "9", check=False)
    assert bad.returncode == 2 and "no version '9'" in bad.stderr


def test_diff_names_weights_data_and_config_keys(env: dict) -> None:
    out = versions(env, "diff", MODEL, "1", "2").stdout
    with Registry(env["db"]) as reg:
        a, b = (reg.get_version(MODEL, v).card.lineage for v in ("1", "2"))
    summary = dict(line.split(None, 1) for line in out.splitlines()[1:6])
    # Each seed draws another split, so the tiny vocabulary (and with it the size) differs too.
    assert summary["model"].startswith("changed: weights_sha256")
    assert summary["data"] == "changed: data_fingerprint"
    assert summary["config"] == "changed: config_hash, seed"  # the versions differ only in their seed
    # Both versions were built by this test, but the shared work tree may change in between.
    same_code = (a.code_commit, a.code_dirty) == (b.code_commit, b.code_dirty)
    assert summary["code"].startswith("unchanged" if same_code else "changed: code_")
    for value in (a.weights_sha256, b.weights_sha256, a.data_fingerprint, b.data_fingerprint):
        assert value in out
    assert any(line.split() == ["seed", "0", "->", "1"] for line in out.splitlines()), out
    assert "identical" in versions(env, "diff", MODEL, "2", "3").stdout
    changes = json.loads(versions(env, "diff", MODEL, "1", "2", "--json").stdout)["changes"]
    assert {"weights_sha256", "data_fingerprint", "config.seed"} <= {c["key"] for c in changes}


def test_prune_goes_through_the_servers_admin_api(env: dict, server: str) -> None:
    """Keep 1: 4 is the newest, 2 live, 1 the rollback target; only 3 goes, and only on the server's say."""
    folder3 = env["repo"] / MODEL / "3"
    api = ("--url", server, "--token", TOKEN)
    dry = cli("versions", "prune", MODEL, "--keep", "1", "--dry-run", *api).stdout
    assert "would prune 3 " in dry and folder3.is_dir()  # dry run changes nothing
    assert "4 deployable" in versions(env, "list", MODEL).stdout

    out = cli("versions", "prune", MODEL, "--keep", "1", *api).stdout
    assert "pruned 3 " in out and "rollback target" in out and "live 100%" in out
    assert not folder3.exists()
    listing = versions(env, "list", MODEL).stdout
    assert "3 deployable" in listing and _row(listing, "3").split()[1] == "pruned"
    with Registry(env["db"]) as reg:
        assert [(e.data["versions"], e.data["actor"]) for e in reg.events(MODEL) if e.kind == "pruned"] == [
            (["3"], "admin-api")]
    again = json.loads(cli("versions", "prune", MODEL, "--keep", "1", "--json", *api).stdout)
    assert again["pruned"] == [] and again["kept"] == ["1", "2", "4"]
    refused = cli("versions", "prune", MODEL, "--keep", "1", "--url", server, "--token", "wrong", check=False)
    assert refused.returncode == 2 and "401" in refused.stderr


def test_history_table_before_after_reason_actor(env: dict) -> None:
    out = cli("history", "--model", MODEL, "--registry", str(env["db"])).stdout
    lines = out.splitlines()
    assert "3 traffic changes" in lines[0]
    rows = lines[3:]
    assert len(rows) == 3
    assert "(none)" in rows[0] and "v1 100%" in rows[0] and "initial deployment" in rows[0]
    assert "v1 90% + v2 10%" in rows[1] and "controller" in rows[1]
    before, after = rows[2].split("->")
    assert "v1 90% + v2 10%" in before and "v2 100%" in after and "canary promoted" in after
    data = json.loads(cli("history", "--model", MODEL, "--registry", str(env["db"]), "--json").stdout)
    assert [h["reason"] for h in data["history"]] == ["initial deployment", "canary step 1", "canary promoted"]
    missing = cli("history", "--registry", str(env["db"].with_name("nope.db")), check=False)
    assert missing.returncode == 2 and "no registry" in missing.stderr


def test_serve_start_prunes_to_retain_versions(env: dict) -> None:
    """`distilserve serve` prunes when it registers the repository (Runner.prepare; no Ray needed)."""
    from pydantic import ValidationError

    from serving.config import ServeConfig
    from serving.runner import Runner

    with pytest.raises(ValidationError, match="retain_versions"):
        ServeConfig(retain_versions=0)
    with Registry(env["db"]) as reg:
        reg.set_warm(MODEL, "1")  # warm and rollback target at once: still one protected version
    cfg = ServeConfig(model_repository=env["repo"], registry=env["db"], models=[MODEL], retain_versions=1)
    runner = Runner(cfg)
    runner.prepare()
    assert [v.version for v in runner.registry.list_versions(MODEL) if v.status == "pruned"] == ["3"]
    assert not (env["repo"] / MODEL / "3").exists() and (env["repo"] / MODEL / "1").is_dir()
    (event,) = [e for e in runner.registry.events(MODEL) if e.kind == "pruned"]
    assert event.data == {"versions": ["3"], "keep": 1, "actor": "serve"}
    runner.prepare()  # a restart prunes nothing more and records nothing
    assert len([e for e in runner.registry.events(MODEL) if e.kind == "pruned"]) == 1
