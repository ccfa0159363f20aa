"""Serving configuration: one pydantic model validates YAML files, CLI flags and API bodies."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from distilserve.core.names import MODEL_PATTERN
from serving.cpu_affinity import parse_cpu_list


class AutoscalingSettings(BaseModel):
    """Ray Serve autoscaling for each ModelVersion deployment (see BENCHMARKS.md for the why)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(default=1, ge=0, le=64, description="Replicas kept even when idle.")
    max_replicas: int = Field(default=2, ge=1, le=64, description="Upper bound; each replica owns a Triton.")
    target_ongoing_requests: float = Field(default=8, gt=0, description="Per-replica in-flight requests to aim for.")
    upscale_delay_s: float = Field(default=2.0, ge=0, description="Sustained overload before adding replicas.")
    downscale_delay_s: float = Field(default=30.0, ge=0, description="Sustained idleness before removing replicas.")
    look_back_period_s: float = Field(default=5.0, gt=0, description="Window the load average is taken over.")
    metrics_interval_s: float = Field(default=1.0, gt=0, description="How often replicas report their load.")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSettings:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})")
        if self.look_back_period_s <= self.metrics_interval_s:
            raise ValueError(
                f"look_back_period_s ({self.look_back_period_s}) must be > metrics_interval_s ({self.metrics_interval_s})"
            )
        return self

    def to_serve(self) -> dict:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
            "metrics_interval_s": self.metrics_interval_s,
            # Counts the ingress's short path to Triton as well (serving/autoscale_policy.py).
            "policy": {"policy_function": "serving.autoscale_policy:triton_aware_policy"},
        }


class LimitSettings(BaseModel):
    """Request limits: the API refuses anything bigger with a 4xx naming the field."""

    model_config = ConfigDict(extra="forbid")

    max_items: int = Field(default=64, ge=1, le=64, description="Texts per request (Triton max_batch_size is 64).")
    max_text_chars: int = Field(default=2000, ge=1, le=100_000, description="Characters per text.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Request body size.")


class BatchingSettings(BaseModel):
    """Micro-batching at the ingress (serving/transport/microbatch.py; BENCHMARKS.md has the measurements)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Coalesce concurrent requests to one version into one call.")
    max_texts: int = Field(default=32, ge=1, le=64, description="Texts per coalesced call (Triton max_batch_size is 64).")
    max_wait_ms: float = Field(default=4.0, ge=0, le=100,
                               description="Longest a request waits for others to share its call.")
    paced: bool = Field(
        default=True,
        description="Send when a call's share of the clients waits (closed-loop clients come back together; "
                    "with two calls in flight, half of them), and hold requests while every same-node model "
                    "instance has its calls in flight; max_wait_ms bounds the wait.")
    calls_per_instance: int = Field(
        default=1, ge=1, le=8, validation_alias=AliasChoices("calls_per_instance", "calls_per_triton"),
        description="Paced batching: calls each model instance of a same-node Triton may have at once (the "
                    "instances come from the version's config.pbtxt instance_group, so a Triton with count 2 "
                    "gets two calls). 2 keeps the next batch waiting inside Triton while one executes (no "
                    "idle gap for the round trip back to the clients), at the price of smaller batches. "
                    "Formerly calls_per_triton, which is still read.")
    flush_when_idle: bool = Field(
        default=False,
        description="Send at once when no call to the version is in flight (lowest latency when idle; "
                    "concurrent clients then tend to fall out of step and stop sharing calls).")
    max_tokens_per_call: int | None = Field(
        default=None,
        description="Length-aware batching: a call carries texts only while n_texts x longest text's token estimate "
                    "(characters/4 + 2: the ingress has no tokenizer) stays within this, and waiting requests go "
                    "shortest first, so one long text does not make short ones pad to its length. "
                    "None = off (first come, first served; every waiting request in one call).")
    max_reorder_ms: float = Field(
        default=20.0, ge=0, le=1000,
        description="Length-aware batching only: a request waiting longer than this goes before shorter ones "
                    "(first come, first served), so long texts are never starved.")

    @field_validator("max_tokens_per_call")
    @classmethod
    def _tokens_positive(cls, v: int | None) -> int | None:
        if v is not None and not 16 <= v <= 1_000_000:
            raise ValueError(f"max_tokens_per_call must be None (off) or between 16 and 1000000, got {v!r}")
        return v


class SheddingSettings(BaseModel):
    """Load shedding at the ingress: a bounded admission queue per version (serving/transport/admission.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Refuse requests past the queue bound at once with 429 + Retry-After, so overload never "
                    "becomes client timeouts. Off: every request queues, however long the queue.")
    slo_ms: float = Field(
        default=2000.0,
        description="Latency objective the queue bound is sized from: bound = slo_ms x parallel calls / measured "
                    "ms per text; a request is admitted while fewer texts are queued ahead of it. The default is "
                    "a backstop against pile-ups (about 140 texts at 14 ms a text on a 2-core CPU), well above "
                    "the autoscaler's target; set a tighter one to shed sooner.")
    min_queue: int = Field(default=8, description="Floor of the queue bound, in texts.")
    max_queue: int = Field(default=1024, description="Ceiling of the queue bound (and the bound before any call "
                                                     "is measured), in texts.")
    ewma_alpha: float = Field(default=0.2, description="Weight of the newest call in the service-time average.")
    min_call_texts: int = Field(
        default=8, ge=1, le=64,
        description="Texts a call needs to size the queue bound as measured (ms / texts). A smaller call's "
                    "duration is mostly per-call overhead when the model batches well: until such a call is "
                    "seen it counts spread over this many texts (a provisional, admitting estimate), and after "
                    "it only where it proves the estimate wrong (serving/transport/admission.py). 1 measures "
                    "every call as cost per text: right for a CPU model with a tight slo_ms. At most "
                    "batching.max_texts counts; with batching off every call is measured.")

    @model_validator(mode="after")
    def _check(self) -> SheddingSettings:
        if not 1 <= self.slo_ms <= 600_000:
            raise ValueError(f"slo_ms must be between 1 and 600000, got {self.slo_ms!r}")
        if not 1 <= self.min_queue <= self.max_queue:
            raise ValueError(f"need 1 <= min_queue <= max_queue, got min_queue={self.min_queue!r}, "
                             f"max_queue={self.max_queue!r}")
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError(f"ewma_alpha must be in (0, 1], got {self.ewma_alpha!r}")
        return self


# What serving.registry accepts as a URL (anything without '://' is a SQLite file).
REGISTRY_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "sqlite")


class ServeConfig(BaseModel):
    """Everything `distilserve serve` needs."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="HTTP listen address; loopback unless you mean it.")
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port of the ingress.")
    grpc_port: int | None = Field(
        default=8001, ge=0, le=65535,
        description="Open Inference Protocol over gRPC (Triton's GRPCInferenceService) on host; 0 or null: off. "
                    "Answered by the ingress replica with http_server 'ingress'.")
    model_repository: Path = Field(default=Path("model_repository"), description="Triton model repository.")
    registry: Path | str = Field(
        default=Path(".distilserve/registry.db"),
        description="The registry: a SQLite file (embedded, one machine) or a PostgreSQL URL "
                    "(postgresql://user@host:5432/db, for a cluster; the password may come from PGPASSWORD).")
    models: list[Annotated[str, StringConstraints(pattern=MODEL_PATTERN)]] = Field(
        default_factory=lambda: ["sentiment"], min_length=1, description="Models to serve, e.g. ['sentiment'].")
    backend: Literal["triton", "torch"] = Field(default="triton", description="Replica backend.")
    gpu: float = Field(default=0.0, ge=0, le=8, description="GPUs per replica (fractions allowed); 0 = CPU.")
    replica_cpus: float = Field(default=0.5, ge=0, description="CPUs Ray reserves per ModelVersion replica.")
    torch_threads: int | None = Field(default=None, ge=1, le=256, description="torch threads per model process.")
    model_instances: int | None = Field(
        default=None, ge=1, le=64,
        description="Model instances in each replica's Triton (its instance_group count); None: the version's "
                    "config.pbtxt. The ingress paces calls_per_instance calls per instance. On a 2-core CPU "
                    "machine, 2 instances with torch_threads 1 served 25% more than 1 instance with 2 threads "
                    "at 16 concurrent requests, but a new replica took 20 s instead of 12-13 s to start "
                    "(BENCHMARKS.md, 2026-12-01).")
    autoscaling: AutoscalingSettings = Field(default_factory=AutoscalingSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    shedding: SheddingSettings = Field(default_factory=SheddingSettings)
    ingress_replicas: int = Field(default=1, ge=1, le=64, description="Ingress replicas.")
    ingress_cpus: str | None = Field(
        default=None,
        description="CPUs of its node every Ingress replica keeps to, as `taskset -c` writes them ('0', '0-1,4'); "
                    "None: wherever the OS puts it. Where the ingress and the model replicas share a machine, "
                    "this (with model_cpus) keeps parsing, routing and refusing overload off the model's cores: at "
                    "4x the peak load on "
                    "2 cores the model kept 0.94 of its peak goodput with the ingress on the other core, 0.90 "
                    "beside it (BENCHMARKS.md, 'Item 4 met with the ingress on its own core').",
    )
    model_cpus: str | None = Field(
        default=None,
        description="CPUs of its node every model replica keeps to (its process, its Triton and the Triton's "
                    "model processes), as `taskset -c` writes them; None: wherever the OS puts it. With "
                    "ingress_cpus naming other CPUs, the two never share a core; a model process runs no more "
                    "intra-op threads than these CPUs (model.py caps TORCH_NUM_THREADS).",
    )
    direct_triton: bool = Field(
        default=True,
        description="The ingress sends inference straight to a same-node replica's Triton (one hop, Triton's "
                    "dynamic batcher does the batching); Serve's handle path is the fallback.",
    )
    http_server: Literal["ingress", "serve-proxy"] | None = Field(
        default=None,
        description="Who listens on host:port: 'ingress' = the Ingress replica itself (uvicorn, SO_REUSEPORT, no "
                    "proxy hop; the fast path), 'serve-proxy' = Ray Serve's HTTP proxy in front of the ingress. "
                    "Unset: 'ingress' on the local Ray `distilserve serve` starts, 'serve-proxy' with ray_address "
                    "(on a cluster the ingress replica may land on another node than the one clients reach).",
    )
    http_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="Event loop of the ingress's own listener (HTTP and gRPC, http_server 'ingress'): 'auto' = "
                    "uvloop where it is installed (as uvicorn's loop='auto'), else asyncio's.",
    )
    admin_token: SecretStr | None = Field(default=None, description="Bearer token for admin endpoints.")
    traffic_poll_s: float = Field(default=0.25, gt=0, le=5, description="How often the ingress rereads traffic.")
    ray_address: str | None = Field(default=None, description="Existing Ray cluster; None starts a local one.")
    webhooks: list[str] = Field(default_factory=list, description="URLs every rollout event is POSTed to.")
    rollout_tick_s: float = Field(default=5.0, gt=0, le=300, description="How often the rollout controller runs.")
    prediction_cache: str | None = Field(
        default=None, description="Batch prediction cache /v1/predict answers from: a SQLite file or a redis:// URL.")
    rollback_warm_s: float = Field(
        default=900.0, ge=0,
        description="How long after a traffic change the previous version stays deployed for an "
                    "instant rollback; after that it is scaled down (a rollback then waits for a cold start).",
    )
    deploy_attempts: int = Field(
        default=3, ge=1, le=100,
        description="Failed replica starts after which a version's deploy is declared failed (Serve's "
                    "max_constructor_retry_count). Serve's own default, 3 per replica, makes a broken version "
                    "cost min_replicas x 3 model loads before the deploy fails and the controller moves on.",
    )
    retain_versions: int = Field(
        default=3, ge=1, le=1000,
        description="Newest versions per model kept deployable at start; older ones are pruned "
                    "(folders deleted) unless live, shadowed, warm or the rollback target.",
    )

    @model_validator(mode="after")
    def _http_server_default(self) -> ServeConfig:
        if self.http_server is None:
            self.http_server = "serve-proxy" if self.ray_address else "ingress"
        return self

    @field_validator("ingress_cpus", "model_cpus", mode="before")
    @classmethod
    def _cpu_list(cls, v: object) -> object:
        if isinstance(v, int) and not isinstance(v, bool):  # `ingress_cpus: 0` in YAML: one CPU
            v = str(v)
        if isinstance(v, str):
            parse_cpu_list(v)  # ValueError quoting v
        return v

    @field_validator("registry", mode="before")
    @classmethod
    def _registry_path_or_url(cls, v: object) -> object:
        # A URL stays text (Path would fold its '//'); anything else is a SQLite file path.
        if not isinstance(v, str) or "://" not in v:
            return Path(v) if isinstance(v, str) else v
        scheme = v.split("://", 1)[0]
        if scheme not in REGISTRY_SCHEMES:
            shown = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", v)  # never echo a password
            raise ValueError(f"registry {shown!r} must be a SQLite file path or a PostgreSQL URL "
                             f"like 'postgresql://distilserve@db.internal:5432/distilserve' ({scheme!r} is not supported)")
        return v

    @field_validator("prediction_cache")
    @classmethod
    def _cache_path_absolute(cls, v: str | None) -> str | None:
        # Ray workers need not share the CLI's working directory.
        return v if v is None or "://" in v else str(Path(v).resolve())

    @classmethod
    def load(cls, path: Path | None = None, **overrides: object) -> ServeConfig:
        """YAML file (optional) + overrides (CLI flags); the admin token may come from DISTILSERVE_ADMIN_TOKEN."""
        data = yaml.safe_load(Path(path).read_text()) if path else {}
        data = {**(data or {}), **{k: v for k, v in overrides.items() if v is not None}}
        if "admin_token" not in data and os.environ.get("DISTILSERVE_ADMIN_TOKEN"):
            data["admin_token"] = os.environ["DISTILSERVE_ADMIN_TOKEN"]
        return cls.model_validate(data)
