"""Prometheus metrics of the ingress, per model version."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "version"]
        self.requests = Counter(
            "distilserve_requests", "Requests answered, by outcome code", [*labels, "route", "code"], registry=self.registry
        )
        self.errors = Counter("distilserve_errors", "Server-side failures (5xx)", labels, registry=self.registry)
        self.latency = Histogram(
            "distilserve_request_latency_seconds", "End-to-end latency at the ingress", labels,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "distilserve_batch_size", "Texts per request", labels,
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry,
        )
        self.downstream_batch = Histogram(
            "distilserve_downstream_batch_texts", "Texts per call from the ingress to a version (micro-batched)",
            labels, buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry,
        )
        self.calls = Counter(
            "distilserve_version_calls", "Calls from the ingress to a version, by path: 'triton' = straight to a "
            "same-node Triton, 'serve' = through the version's Serve deployment", [*labels, "path"], registry=self.registry,
        )
        self.cache_hits = Counter("distilserve_cache_hits", "Predictions served from the batch cache", labels,
                                  registry=self.registry)
        self.client_errors = Counter("distilserve_client_errors", "Requests refused (4xx)", ["route", "code"],
                                     registry=self.registry)
        self.shed = Counter("distilserve_shed_requests", "Requests refused at once because the version's admission "
                            "queue was full (429), by who sent them: 'user' or 'shadow' (a shadow copy)",
                            [*labels, "source"], registry=self.registry)
        self.shed_early = Counter("distilserve_shed_early_requests", "Of the shed requests, those refused before "
                                  "their body was parsed (serving/http/shed_gate.py)", labels, registry=self.registry)
        self.shadow_requests = Counter("distilserve_shadow_requests", "Copies sent to a shadow version",
                                       [*labels, "outcome"], registry=self.registry)
        self.shadow_latency = Histogram("distilserve_shadow_latency_seconds", "Shadow version latency", labels,
                                        buckets=LATENCY_BUCKETS, registry=self.registry)
        self.shadow_agreement = Counter("distilserve_shadow_agreements", "Shadow labels equal to the live labels",
                                        labels, registry=self.registry)

    def observe(self, model: str, version: str, route: str, code: int, seconds: float, items: int) -> None:
        self.requests.labels(model, version, route, str(code)).inc()
        if code >= 500:
            self.errors.labels(model, version).inc()
        else:
            self.latency.labels(model, version).observe(seconds)
            self.batch_size.labels(model, version).observe(items)

    def render(self) -> bytes:
        return generate_latest(self.registry)
