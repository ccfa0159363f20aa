"""`Ingress`: the Ray Serve deployment that answers HTTP. Wiring only.

It builds the traffic view, the transport, the data plane and the admin control, hands them to
the routers (serving/http/), and, with `http_server: ingress`, runs the HTTP listener in this
replica. Behaviour lives in serving/http/ (protocol), serving/dataplane.py (what a request
needs) and serving/transport/ (how a version is reached).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ray import serve
from ray.serve import Application

from serving import raycompat
from serving.batch.cache import open_cache
from serving.config import ServeConfig
from serving.control.admin import AdminControl
from serving.cpu_affinity import parse_cpu_list, pin_process
from serving.dataplane import DataPlane
from serving.grpc.server import IngressGrpcServer
from serving.http.app import attach, build_app
from serving.http.deps import Services
from serving.http.shed_gate import ShedGate
from serving.http_server import IngressHttpServer
from serving.listeners import start_listeners
from serving.metrics import Metrics
from serving.registry.db import is_url
from serving.state import RegistryView
from serving.transport.transport import Transport
from serving.triton import codec

log = logging.getLogger("distilserve.ingress")
app = build_app()


# Stopping waits for the calls Serve routed here (behind Serve's proxy) in 0.5 s steps, not 2 s.
@serve.deployment(name="Ingress", max_ongoing_requests=256, health_check_period_s=5.0,
                  graceful_shutdown_wait_loop_s=0.5)
@serve.ingress(app)
class Ingress:
    def __init__(self, config: dict, admin_token: str | None = None, control_plane: str = "registry") -> None:
        self.cfg = cfg = ServeConfig.model_validate(config)
        if cfg.ingress_cpus:  # before any listener thread starts: those inherit the mask
            pin_process(parse_cpu_list(cfg.ingress_cpus))
        if cfg.direct_triton:
            raycompat.check_internal_kv()  # the Triton endpoint directory
        if control_plane == "controller":
            # Routing from the controller's snapshot, writes through it: no database here.
            from serving.control.snapshot_view import controller_services

            view, remote_control, ui_source = controller_services(cfg.models)
        else:
            view, remote_control = RegistryView(cfg.registry, cfg.models, cfg.traffic_poll_s), None
            ui_source = None
        metrics = Metrics()
        transport = Transport.for_this_node(cfg.batching, metrics, cfg.direct_triton, shedding=cfg.shedding)
        cache = open_cache(cfg.prediction_cache) if cfg.prediction_cache else None
        limits = codec.Limits(cfg.limits.max_items, cfg.limits.max_text_chars)
        self.plane = DataPlane(view, transport, metrics, limits, cache)
        control = remote_control or AdminControl(view.registry, view.models, view.refresh, metrics.render,
                                                 transport.ready, cfg.webhooks)
        token = admin_token.encode() if admin_token else None
        attach(app, Services(self.plane, control, token, cfg.limits.max_body_bytes, ui_source))
        self._http: IngressHttpServer | None = None
        self._grpc: IngressGrpcServer | None = None
        if cfg.http_server == "ingress":
            # This replica answers HTTP (and gRPC) itself on host:port; Serve's proxy is off (runner.py).
            # With shedding on, a request certain to be refused is answered before FastAPI parses it.
            served = ShedGate(app, self.plane.refuse_early, cfg.limits.max_body_bytes) if cfg.shedding.enabled else app
            self._http, self._grpc = start_listeners(served, self.plane, cfg.host, cfg.port, cfg.grpc_port,
                                                     cfg.limits.max_body_bytes, cfg.http_loop)
        elif cfg.grpc_port:
            log.warning("grpc_port %d: not served with http_server=%r (gRPC needs the ingress's own listener)",
                        cfg.grpc_port, cfg.http_server)

    def check_health(self) -> None:
        if self._http is not None and not self._http.alive():
            raise RuntimeError(f"the ingress HTTP listener on {self.cfg.host}:{self.cfg.port} is down")
        if self._grpc is not None and not self._grpc.alive():
            raise RuntimeError(f"the ingress gRPC listener on {self.cfg.host}:{self.cfg.grpc_port} is down")

    def __del__(self) -> None:
        grpc_server = getattr(self, "_grpc", None)
        if grpc_server is not None:
            grpc_server.stop()
        http = getattr(self, "_http", None)
        if http is not None:
            http.stop()
        plane = getattr(self, "plane", None)
        if plane is not None:
            plane.close()


def ingress_app(cfg: ServeConfig, control_plane: str = "registry") -> Application:
    """The Ingress deployment; the admin token travels as an argument, never in the config dump."""
    resolved = cfg.model_copy(
        update={"registry": cfg.registry if is_url(cfg.registry) else Path(cfg.registry).resolve(),
                "model_repository": Path(cfg.model_repository).resolve()}
    )
    token = cfg.admin_token.get_secret_value() if cfg.admin_token else None
    return Ingress.options(num_replicas=cfg.ingress_replicas, ray_actor_options={"num_cpus": 0}).bind(
        resolved.model_dump(mode="json", exclude={"admin_token"}), token, control_plane
    )
