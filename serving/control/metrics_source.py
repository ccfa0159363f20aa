"""Prometheus counters of the ingress -> per-version window stats for decide().

Pure part: `parse_snapshot` (Prometheus text -> cumulative counters of one model), `window_stats`
(two snapshots -> `VersionStats` per version, p99 from histogram bucket deltas) and
`histogram_quantile` (from `stats`). Transport part: `HttpMetricsSource` scrapes a URL, `TextMetricsSource`
wraps an in-process renderer (the ingress reading its own registry). A failed scrape is None:
the window it would have measured is "no data", which never promotes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field

from serving.rollout.stats import VersionStats, histogram_quantile

log = logging.getLogger(__name__)

REQUESTS = "distilserve_requests_total"
LATENCY = "distilserve_request_latency_seconds_bucket"
SHADOW_REQUESTS = "distilserve_shadow_requests_total"
SHADOW_LATENCY = "distilserve_shadow_latency_seconds_bucket"
SHADOW_AGREEMENTS = "distilserve_shadow_agreements_total"


class VersionCounters(BaseModel):
    """Cumulative counters of one model version at one scrape."""

    model_config = ConfigDict(extra="forbid")

    requests: float = Field(default=0.0, ge=0, description="Requests answered, every code.")
    errors: float = Field(default=0.0, ge=0, description="Requests answered with a 5xx.")
    latency: dict[str, float] = Field(default_factory=dict, description="Cumulative bucket counts by `le`.")
    shadow_ok: float = Field(default=0.0, ge=0, description="Shadow copies answered.")
    shadow_errors: float = Field(default=0.0, ge=0, description="Shadow copies that failed.")
    shadow_agreed: float = Field(default=0.0, ge=0, description="Shadow labels equal to the live labels.")
    shadow_latency: dict[str, float] = Field(default_factory=dict, description="Shadow latency buckets by `le`.")


class Snapshot(BaseModel):
    """Counters of every version of one model, as scraped."""

    model_config = ConfigDict(extra="forbid")

    versions: dict[str, VersionCounters] = Field(default_factory=dict)


def parse_snapshot(text: str, model: str) -> Snapshot:
    """The counters of `model` in Prometheus exposition `text`.

    Raises:
        ValueError: the text is not Prometheus exposition format.
    """
    versions: dict[str, VersionCounters] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model or "version" not in labels:
                continue
            c = versions.setdefault(labels["version"], VersionCounters())
            value = float(sample.value)
            if sample.name == REQUESTS:
                c.requests += value
                if labels.get("code", "").startswith("5"):
                    c.errors += value
            elif sample.name == LATENCY:
                c.latency[_le(labels["le"])] = value
            elif sample.name == SHADOW_REQUESTS:
                if labels.get("outcome") == "ok":
                    c.shadow_ok += value
                else:
                    c.shadow_errors += value
            elif sample.name == SHADOW_AGREEMENTS:
                c.shadow_agreed += value
            elif sample.name == SHADOW_LATENCY:
                c.shadow_latency[_le(labels["le"])] = value
    return Snapshot(versions=versions)


def _le(text: str) -> str:
    # "0.05" and "5.0e-02" are the same bound; key buckets by a canonical spelling.
    bound = float(text)
    return "+Inf" if math.isinf(bound) else repr(bound)


def _bucket_delta(now: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    # A histogram whose total went down was reset (the ingress restarted): Prometheus' increase()
    # then counts everything since the reset, i.e. the current values.
    if now.get("+Inf", 0.0) < before.get("+Inf", 0.0):
        return dict(now)
    return {le: max(n - before.get(le, 0.0), 0.0) for le, n in now.items()}


def _delta(now: float, before: float) -> float:
    return now if now < before else now - before


def _p99_ms(buckets: Mapping[str, float]) -> float | None:
    p99 = histogram_quantile(0.99, buckets)
    return None if p99 is None else p99 * 1000.0


def counters_delta(now: VersionCounters, before: VersionCounters | None) -> VersionStats:
    """Requests, errors and p99 of one version between two scrapes; shadow fields stay 0."""
    before = before or VersionCounters()
    reset = now.requests < before.requests
    requests = now.requests if reset else now.requests - before.requests
    errors = now.errors if reset else max(now.errors - before.errors, 0.0)
    return VersionStats(
        requests=round(requests),
        errors=min(round(errors), round(requests)),
        p99_ms=_p99_ms(_bucket_delta(now.latency, before.latency)),
    )


def shadow_delta(now: VersionCounters, before: VersionCounters | None) -> VersionStats:
    """The shadow copies a version answered between two scrapes, as the candidate's stats.

    Agreements are counted per text and copies per request; a batched request can agree on
    more texts than one, so `agreed` is capped at `compared` (exact for single-text requests).
    """
    before = before or VersionCounters()
    ok = _delta(now.shadow_ok, before.shadow_ok)
    failed = _delta(now.shadow_errors, before.shadow_errors)
    agreed = _delta(now.shadow_agreed, before.shadow_agreed)
    compared = round(ok)
    return VersionStats(
        requests=compared + round(failed),
        errors=round(failed),
        p99_ms=_p99_ms(_bucket_delta(now.shadow_latency, before.shadow_latency)),
        compared=compared,
        agreed=min(round(agreed), compared),
    )


def window_stats(
    now: Snapshot, before: Snapshot, versions: list[str], *, shadow: str | None = None
) -> dict[str, VersionStats]:
    """Per-version stats of the window between `before` and `now`; `shadow` is judged on its copies.

    Every requested version gets an entry: one never seen has 0 requests and no p99, which the
    gates read as "not enough data" (inconclusive), never as a pass.
    """
    out = {}
    for v in versions:
        cur = now.versions.get(v, VersionCounters())
        old = before.versions.get(v)
        out[v] = shadow_delta(cur, old) if v == shadow else counters_delta(cur, old)
    return out


def window_latency(now: Snapshot, before: Snapshot, versions: list[str]) -> dict[str, dict[str, float]]:
    """Per-version latency histogram of the window between `before` and `now`, {le seconds: count}.

    decide() sums these over the windows of one canary step and reads p99 off the sum: the p99
    of all those requests, which no combination of per-window p99s gives.
    """
    empty = VersionCounters()
    return {
        v: _bucket_delta(now.versions.get(v, empty).latency, before.versions.get(v, empty).latency)
        for v in versions
    }


class HttpMetricsSource:
    """Scrapes the ingress /metrics over HTTP (loopback); None when the scrape fails."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def scrape(self, model: str) -> Snapshot | None:
        try:
            r = httpx.get(self.url, timeout=self.timeout_s)
            r.raise_for_status()
            return parse_snapshot(r.text, model)
        except (httpx.HTTPError, ValueError) as e:
            log.warning("metrics scrape of %s failed: %s", self.url, e)
            return None


class TextMetricsSource:
    """Reads Prometheus text from a callable (the ingress's own registry); None on failure."""

    def __init__(self, render: Callable[[], str | bytes]) -> None:
        self.render = render

    def scrape(self, model: str) -> Snapshot | None:
        try:
            text = self.render()
            return parse_snapshot(text.decode() if isinstance(text, bytes) else text, model)
        except Exception as e:  # noqa: BLE001 - a broken renderer is "no data", never a pass
            log.warning("metrics render failed: %s", e)
            return None
