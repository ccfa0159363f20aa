"""Start Ray + Serve on loopback with the controller and ingress applications, and the
reconcile logic the controller runs (serving/control/controller.py): keep the deployed apps
equal to the registry's wishes.

The registry is the source of truth. Every `reconcile_s` the runner deploys an application
for each version that is live, shadowed, or the rollback target (kept warm so a rollback is
a traffic switch, not a cold start), and deletes the applications of versions that are none
of those.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from distilserve.core.card import CARD_FILENAME, ModelCard
from distilserve.core.names import is_model_name
from serving import raycompat
from serving.config import ServeConfig
from serving.registry import Registry, RegistryError

log = logging.getLogger("distilserve.serve")


def register_repository(registry: Registry, repository: Path, model: str) -> list[str]:
    """Register every exported version folder (one with a card.json) of `model`."""
    model_dir = Path(repository) / model
    found = []
    if not model_dir.is_dir():
        return found
    for folder in sorted((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        if not (folder / CARD_FILENAME).is_file():
            continue
        try:
            registry.register_version(model, folder.name, folder.resolve(), ModelCard.read(folder))
            found.append(folder.name)
        except RegistryError as e:
            log.warning("not registering %s: %s", folder, e)
    return found


def repository_models(repository: Path) -> list[str]:
    """Model folders of the repository with a config.pbtxt and at least one exported version
    (a numbered folder holding a card): what the controller serves besides the configured ones."""
    root = Path(repository)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if not (folder.is_dir() and is_model_name(folder.name) and (folder / "config.pbtxt").is_file()):
            continue
        if any(v.name.isdigit() and (v / CARD_FILENAME).is_file() for v in folder.iterdir()):
            found.append(folder.name)
    return found


def served_models(cfg: ServeConfig) -> list[str]:
    """The configured models, then every other model of the repository (read from disk only)."""
    extra = [m for m in repository_models(cfg.model_repository) if m not in cfg.models]
    return [*cfg.models, *extra]


def ensure_initial_traffic(registry: Registry, model: str) -> None:
    """A model that never had traffic sends all of it to its lowest available version."""
    if registry.get_traffic(model):
        return
    available = [v.version for v in registry.list_versions(model) if v.status == "available"]
    if available:
        registry.set_traffic(model, {available[0]: 100.0}, reason="initial deployment", actor="serve")


def desired_versions(registry: Registry, model: str, rollback_warm_s: float = float("inf"),
                     now: float | None = None) -> set[str]:
    """Versions that must be deployed: live, shadowed, warm, and the rollback target while the
    last traffic change is younger than `rollback_warm_s` (an instant rollback is a traffic
    switch, not a cold start; past that window the old colour is scaled down)."""
    wanted = {v for v, w in registry.get_traffic(model).items() if w > 0}
    shadow = registry.get_shadow(model)
    if shadow:
        wanted.add(shadow.version)
    target = registry.rollback_target(model)
    if target:
        last = registry.history(model, limit=1)
        since = last[0].ts if last else 0.0
        age = (time.time() if now is None else now) - since if last else float("inf")
        # A blue-green rollout retires its old colour when its own rollback window ends.
        retired = {e.data.get("stable") for e in registry.events(model, limit=200)
                   if e.kind == "rollout.scale_down" and e.ts >= since}
        if age < rollback_warm_s and target not in retired:
            wanted.add(target)
    wanted |= set(registry.warm_versions(model))
    return wanted


def deploy_failure_reason(app: str, limit: int = 800) -> str:
    """Why Serve could not start `app`: the replica's own error (e.g. Triton's load error).

    `serve.run` raises only "Failed to update the deployments"; the cause is in the
    deployment's status message, usually ending with the replica constructor's traceback.
    """
    from ray import serve

    try:
        overview = serve.status().applications.get(app)
    except Exception:  # noqa: BLE001 - the reason is a nicety; never fail the failure path
        return ""
    if overview is None:
        return ""
    messages = [d.message for d in overview.deployments.values() if getattr(d, "message", "")]
    text = " ".join(messages) or getattr(overview, "message", "")
    # Keep the end: the innermost exception (TritonError: loading model ... failed: ...) is last.
    return ("cause: ..." + text[-limit:]) if len(text) > limit else (f"cause: {text}" if text else "")


class Runner:
    """Deploys and removes version applications to match the registry."""

    def __init__(self, cfg: ServeConfig, discover: bool = False) -> None:
        self.cfg = cfg
        self.discover = discover
        self.registry = Registry(cfg.registry)
        self.deployed: dict[str, set[str]] = {m: set() for m in cfg.models}
        self._prepared: set[str] = set()
        # A version that failed to deploy is retried after a back-off, not on every pass:
        # each attempt starts a Triton and loads the model, which is not free.
        self.failed_at: dict[tuple[str, str], float] = {}
        self.retry_after_s = 60.0

    def models(self) -> list[str]:
        """The configured models, then (with `discover`) every other model of the repository,
        including folders added while the controller runs."""
        return served_models(self.cfg) if self.discover else list(self.cfg.models)

    def prepare(self) -> None:
        for model in self.models():
            self._prepared.add(model)
            versions = register_repository(self.registry, self.cfg.model_repository, model)
            log.info("model %s: versions on disk %s", model, versions)
            ensure_initial_traffic(self.registry, model)
            # After the initial traffic, so the live version is protected; prune itself never
            # retires a live, shadowed, warm or rollback-target version.
            keep = self.cfg.retain_versions
            pruned = self.registry.prune(model, keep=keep)
            if pruned:
                log.info("model %s: pruned versions %s (retain_versions=%d)", model, pruned, keep)
                self.registry.record_event(model, "pruned", f"versions {pruned} pruned at start (keep {keep})",
                                           {"versions": pruned, "keep": keep, "actor": "serve"})

    def reconcile(self) -> None:
        """One pass: deploy the versions the registry wants and Serve lacks, all at once, then
        remove the ones it no longer wants (after the deploys: a blue-green's new colour is up
        before its old one goes)."""
        from distilserve.core.names import app_name

        missing: list[tuple[str, str]] = []
        unwanted: dict[str, list[str]] = {}
        for model in self.models():
            register_repository(self.registry, self.cfg.model_repository, model)
            if model not in self._prepared:  # a model folder added while running
                ensure_initial_traffic(self.registry, model)
                self._prepared.add(model)
            wanted = desired_versions(self.registry, model, self.cfg.rollback_warm_s)
            self.deployed.setdefault(model, set())
            for version in sorted(wanted - self.deployed[model], key=int):
                failed = self.failed_at.get((model, version))
                if failed is not None and time.monotonic() - failed < self.retry_after_s:
                    continue
                missing.append((model, version))
            unwanted[model] = sorted(self.deployed[model] - wanted, key=int)
        if missing:
            for (model, version), error in self._deploy(missing).items():
                if error is None:
                    self.deployed[model].add(version)
                    self.failed_at.pop((model, version), None)
                    self.registry.record_event(model, "deployed", f"version {version} deployed", {"version": version})
                else:
                    self._deploy_failed(model, version, error)
        for model, versions in unwanted.items():
            for version in versions:
                log.info("removing %s v%s", model, version)
                raycompat.delete_app_nowait(app_name(model, version))
                self.deployed[model].discard(version)
                self.registry.record_event(model, "removed", f"version {version} scaled down", {"version": version})

    def _deploy(self, versions: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """Deploy the applications of `versions` side by side and wait for each: {(model, version):
        None once RUNNING, else the error}. Their replicas start together (each its own Triton), so a
        pass that deploys several versions takes about as long as the slowest, not the sum."""
        from ray import serve

        from distilserve.core.names import app_name
        from serving.model_version import version_app

        results: dict[tuple[str, str], str | None] = {}
        targets, names = [], {}
        for model, version in versions:
            log.info("deploying %s v%s", model, version)
            try:
                targets.append(serve.RunTarget(target=version_app(self.cfg, model, version),
                                               name=app_name(model, version), route_prefix=None))
                names[app_name(model, version)] = (model, version)
            except Exception as e:  # noqa: BLE001 - a broken version must not stop the others
                results[(model, version)] = str(e)
        if not targets:
            return results
        try:
            serve.run_many(targets, wait_for_applications_running=False)
        except Exception:  # noqa: BLE001 - one at a time, so that only the broken one fails
            log.warning("deploying %s together failed; one at a time", sorted(names), exc_info=True)
            for target in targets:
                try:
                    serve.run(target.target, name=target.name, route_prefix=None, blocking=False)
                    results[names[target.name]] = None
                except Exception as e:  # noqa: BLE001 - a broken version must not stop the others
                    results[names[target.name]] = str(e)
            return results
        for name, outcome in wait_running(list(names)).items():
            results[names[name]] = outcome
        return results

    def _deploy_failed(self, model: str, version: str, error: str) -> None:
        from distilserve.core.names import app_name

        reason = f"{error} {deploy_failure_reason(app_name(model, version))}".strip()
        log.error("deploying %s v%s failed: %s", model, version, reason)
        self.failed_at[(model, version)] = time.monotonic()
        self.registry.record_event(model, "deploy_failed", f"version {version}: {reason}", {"version": version})
        raycompat.delete_app_nowait(app_name(model, version))
        # A failed warm deploy (e.g. corrupt weights) is released, not retried every
        # pass: each retry blocks reconcile for the whole failed rollout of replicas.
        if version in self.registry.warm_versions(model):
            self.registry.set_warm(model, version, False, reason=f"deploy failed: {reason}"[:500])

    def adopt_deployed(self) -> None:
        """Count the version applications already running as deployed (a restarted controller
        takes them over instead of redeploying them, which would restart their replicas)."""
        from ray import serve

        from distilserve.core.names import app_name

        apps = serve.status().applications
        for model in self.models():
            for name, app in apps.items():
                version = name.removeprefix(app_name(model, ""))
                if name != version and version.isdigit() and app.status in _ADOPTABLE:
                    self.deployed.setdefault(model, set()).add(version)

    def start(self) -> None:
        """Everything in this process (tests): prepare, Serve, versions, ingress; no controller."""
        from ray import serve

        from distilserve.core.names import INGRESS_APP
        from serving.ingress import ingress_app

        self.prepare()
        start_serve(self.cfg)
        # The ingress's replica starts while the versions' do; start() returns once all run.
        serve.run_many([serve.RunTarget(target=ingress_app(self.cfg), name=INGRESS_APP, route_prefix="/")],
                       wait_for_applications_running=False)
        self.reconcile()
        error = wait_running([INGRESS_APP])[INGRESS_APP]
        if error is not None:
            raise RuntimeError(f"{error} {deploy_failure_reason(INGRESS_APP)}".strip())


def _app_state(app: object | None) -> tuple[str, str] | None:
    """(status, message) of a Serve ApplicationStatusOverview; None when there is no such app."""
    if app is None:
        return None
    return str(getattr(app.status, "value", app.status)), getattr(app, "message", "") or ""


def deploy_outcomes(states: dict[str, tuple[str, str] | None]) -> dict[str, str | None]:
    """Which of the applications being deployed are done: {name: None (RUNNING) or the error}.
    The rest are still on their way. As `serve.run` waits: RUNNING is done, DEPLOY_FAILED and a
    vanished application are failures, anything else (DEPLOYING, UNHEALTHY while replicas are
    retried) is not done yet."""
    done: dict[str, str | None] = {}
    for name, state in states.items():
        if state is None:
            done[name] = f"Waiting for application {name} to be RUNNING, but application doesn't exist."
        elif state[0] == "RUNNING":
            done[name] = None
        elif state[0] == "DEPLOY_FAILED":
            done[name] = f"Deploying application {name} failed: {state[1]}"
    return done


def wait_running(names: list[str], poll_s: float = 0.5) -> dict[str, str | None]:
    """Wait until each application is RUNNING or has failed: {name: None or the error}."""
    from ray import serve

    results: dict[str, str | None] = {}
    pending = set(names)
    while pending:
        apps = serve.status().applications
        for name, outcome in deploy_outcomes({n: _app_state(apps.get(n)) for n in pending}).items():
            pending.discard(name)
            results[name] = outcome
        if pending:
            time.sleep(poll_s)
    return results


# Serve application states that mean "deployed" (ApplicationStatus is a str enum); a failed
# application is not adopted, so the controller retries it.
_ADOPTABLE = ("RUNNING", "DEPLOYING", "UNHEALTHY")


def start_serve(cfg: ServeConfig) -> None:
    """Start Serve: without its proxy when the Ingress replica listens itself."""
    from ray import serve

    if cfg.http_server == "ingress":
        # The Ingress replica listens on host:port itself (serving/http_server.py): no Serve proxy.
        from serving.http_server import check_port_free

        check_port_free(cfg.host, cfg.port)
        serve.start(proxy_location="Disabled")
    else:
        serve.start(http_options={"host": cfg.host, "port": cfg.port}, proxy_location="HeadOnly")
