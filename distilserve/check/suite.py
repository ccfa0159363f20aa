"""The checks, each a small function of a `Target` returning `CheckResult`s, and `run_suite`.

Only JSON on the wire (no binary tensor extension) and only OIP routes are required, so the
suite runs against any Open Inference Protocol server; the /v1 checks are skipped when the
target has no /v1/predict.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from distilserve.check import schema
from distilserve.check.cases import Case, oip_cases, oip_tensor, v1_cases
from distilserve.check.load import run_load
from distilserve.check.report import CheckResult, Report
from distilserve.core.stats import percentile
from distilserve.core.tensors import INPUT_TEXT

GOOD_TEXTS = ["I love this, it works wonderfully", "this is terrible and broken"]
CHECK_ID = "distilserve-check-1"


@dataclass(frozen=True)
class SuiteSettings:
    url: str
    model: str
    latency_budget_ms: float = 1000.0  # p99
    p50_budget_ms: float | None = None  # default: the p99 budget
    duration_s: float = 5.0
    concurrency: int = 4
    max_requests: int = 5000
    timeout_s: float = 30.0


@dataclass
class Target:
    """What the checks learn about the server as they go."""

    settings: SuiteSettings
    client: httpx.Client
    input_name: str = INPUT_TEXT
    rank: int = 1
    outputs: set[str] = field(default_factory=set)
    has_v1: bool = False
    first_answer: dict | None = None

    @property
    def model(self) -> str:
        return self.settings.model

    def post(self, path: str, content: bytes) -> httpx.Response:
        return self.client.post(path, content=content, headers={"Content-Type": "application/json"})

    def good_oip(self, texts: list[str], request_id: str | None = None) -> dict:
        body: dict[str, Any] = {"inputs": [oip_tensor(self.input_name, texts, self.rank)]}
        if request_id is not None:
            body["id"] = request_id
        return body


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def _timed(category: str, name: str, fn: Callable[[], list[str]], ok_detail: str = "") -> CheckResult:
    t0 = time.perf_counter()
    try:
        problems = fn()
    except httpx.HTTPError as e:
        problems = [f"request failed: {type(e).__name__}: {e}"]
    return CheckResult.of(category, name, problems, ok_detail, time.perf_counter() - t0)


def _status(r: httpx.Response, want: int = 200) -> list[str]:
    return [] if r.status_code == want else [f"status {r.status_code}, expected {want}: {r.text[:160]!r}"]


# ---- health and metadata ---------------------------------------------------------------------
def health_checks(t: Target) -> Iterator[CheckResult]:
    for name, path in (("live", "/v2/health/live"), ("ready", "/v2/health/ready"),
                       ("model-ready", f"/v2/models/{t.model}/ready")):
        yield _timed("health", name, lambda path=path: _status(t.client.get(path)))


def metadata_checks(t: Target) -> Iterator[CheckResult]:
    def server() -> list[str]:
        r = t.client.get("/v2")
        body = _json(r)
        if r.status_code != 200 or not isinstance(body, dict):
            return _status(r) or [f"body is not a JSON object: {r.text[:120]!r}"]
        return [f"{k} must be a {kind.__name__}" for k, kind in (("name", str), ("version", str), ("extensions", list))
                if not isinstance(body.get(k), kind)]

    def model() -> list[str]:
        r = t.client.get(f"/v2/models/{t.model}")
        body = _json(r)
        if r.status_code != 200:
            return _status(r)
        problems = schema.metadata_problems(body, t.model)
        if not problems:  # learn the input the inference checks send
            first = body["inputs"][0]
            t.input_name = first["name"]
            t.rank = 2 if len(first["shape"]) == 2 else 1
            t.outputs = {o["name"] for o in body["outputs"]}
        return problems

    yield _timed("output", "server-metadata", server)
    yield _timed("output", "model-metadata", model)


# ---- output format ---------------------------------------------------------------------------
def output_checks(t: Target) -> Iterator[CheckResult]:
    def oip() -> list[str]:
        r = t.post(f"/v2/models/{t.model}/infer", _encode(t.good_oip(GOOD_TEXTS, CHECK_ID)))
        body = _json(r)
        if r.status_code != 200:
            return _status(r)
        problems = schema.oip_infer_problems(body, t.model, CHECK_ID, len(GOOD_TEXTS), t.outputs)
        if not problems:
            t.first_answer = body
        return problems

    yield _timed("output", "oip-infer-schema", oip)
    r = None
    try:
        r = t.post("/v1/predict", _encode({"model": t.model, "inputs": GOOD_TEXTS}))
    except httpx.HTTPError:
        pass
    # No /v1 route: a 404/405 whose error does not speak of the model (not "unknown model").
    body = _json(r) if r is not None else None
    t.has_v1 = r is not None and not (
        r.status_code in (404, 405) and "model" not in str(body.get("error", "") if isinstance(body, dict) else "")
    )
    if not t.has_v1:
        yield CheckResult("output", "v1-predict-schema", "skip", "target has no /v1/predict")
        return
    assert r is not None
    yield CheckResult.of("output", "v1-predict-schema",
                         _status(r) or schema.v1_predict_problems(body, t.model, len(GOOD_TEXTS)),
                         duration_s=r.elapsed.total_seconds())


# ---- input validation --------------------------------------------------------------------------
def judge(case: Case, status: int, body: Any, model: str) -> list[str]:
    """What is wrong with the answer `status`/`body` to `case`; empty when it is right. Pure."""
    if status >= 500:
        return [f"server fault {status} for a client's input: {str(body)[:160]!r}"]
    if case.expect == "4xx":
        if not 400 <= status < 500:
            return [f"status {status}, expected a 4xx refusal"]
        return schema.error_problems(status, body, case.hints)
    if 400 <= status < 500:
        if case.expect == "ok":
            return [f"status {status}, expected 200: {str(body)[:160]!r}"]
        return schema.error_problems(status, body, ())  # refusing is fine; as JSON {"error"}
    if case.expect == "ok":
        if status != 200:
            return [f"status {status}, expected 200"]
        if case.api == "v1":
            return schema.v1_predict_problems(body, model, case.n)
        return schema.oip_infer_problems(body, model, None, case.n)
    return []


def validation_checks(t: Target) -> Iterator[CheckResult]:
    cases = oip_cases(t.model, t.input_name, t.rank)
    if t.has_v1:
        cases += v1_cases(t.model)
    else:
        yield CheckResult("validation", "v1-*", "skip", "target has no /v1/predict")
    default_path = {"oip": f"/v2/models/{t.model}/infer", "v1": "/v1/predict"}
    for case in cases:
        def one(case: Case = case) -> list[str]:
            r = t.post(case.path or default_path[case.api], case.body)
            return judge(case, r.status_code, _json(r), t.model)

        yield _timed("validation", f"{case.api}-{case.name}", one)


# ---- error handling ----------------------------------------------------------------------------
def error_checks(t: Target) -> Iterator[CheckResult]:
    def refused(r: httpx.Response) -> list[str]:
        if 400 <= r.status_code < 500:
            return []
        return [f"status {r.status_code}, expected a 4xx: {r.text[:120]!r}"]

    yield _timed("errors", "unknown-route", lambda: refused(t.client.get(f"/v2/models/{t.model}/no-such-route")))
    yield _timed("errors", "wrong-method", lambda: refused(t.client.get(f"/v2/models/{t.model}/infer")))

    def still_serving() -> list[str]:
        r = t.post(f"/v2/models/{t.model}/infer", _encode(t.good_oip(GOOD_TEXTS, CHECK_ID)))
        if r.status_code != 200:
            return _status(r)
        body = _json(r)
        problems = schema.oip_infer_problems(body, t.model, CHECK_ID, len(GOOD_TEXTS), t.outputs)
        if problems or t.first_answer is None:
            return problems
        return _same_outputs(t.first_answer, body)

    yield _timed("errors", "still-serving-after-bad-input", still_serving,
                 "good requests answered as before the bad ones")


def _same_outputs(a: dict, b: dict) -> list[str]:
    before = {o["name"]: schema.flatten(o.get("data")) for o in a["outputs"]}
    after = {o["name"]: schema.flatten(o.get("data")) for o in b["outputs"]}
    for name, xs in before.items():
        ys = after.get(name)
        same = ys is not None and len(xs) == len(ys) and all(
            abs(x - y) <= 1e-4 if isinstance(x, float) and isinstance(y, float) else x == y
            for x, y in zip(xs, ys, strict=True))
        if not same:
            return [f"output {name} changed for the same input: {xs!r:.80} then {ys!r:.80}"]
    return []


# ---- latency under load ------------------------------------------------------------------------
def latency_checks(t: Target) -> Iterator[CheckResult]:
    s = t.settings
    content = _encode(t.good_oip(GOOD_TEXTS[:1]))
    path = f"/v2/models/{t.model}/infer"
    t0 = time.perf_counter()
    result = run_load(lambda: t.post(path, content).status_code, s.duration_s, s.concurrency, s.max_requests)
    took = time.perf_counter() - t0
    ms = [x * 1000 for x in result.latencies_s]
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    seen = f"{len(ms)} ok of {result.sent} sent at concurrency {s.concurrency}"
    yield CheckResult.of("latency", "errors-under-load",
                         [f"{result.failures} failed ({seen})"] if result.failures or not ms else [],
                         seen, took)
    for name, value, budget in (("p50", p50, s.p50_budget_ms or s.latency_budget_ms),
                                ("p99", p99, s.latency_budget_ms)):
        detail = f"{name} {value:.1f} ms (budget {budget:.0f} ms; {seen})"
        bad = math.isnan(value) or value > budget
        yield CheckResult.of("latency", name, [detail] if bad else [], detail)


def _encode(obj: object) -> bytes:
    import json

    return json.dumps(obj).encode()


def run_suite(settings: SuiteSettings, progress: Callable[[CheckResult], None] | None = None) -> Report:
    """Run every check in order (health, metadata, output, validation, errors, latency)."""
    report = Report(target=f"{settings.url} model={settings.model}")
    with httpx.Client(base_url=settings.url.rstrip("/"), timeout=settings.timeout_s) as client:
        t = Target(settings, client)
        for group in (health_checks, metadata_checks, output_checks, validation_checks, error_checks,
                      latency_checks):
            for result in group(t):
                report.add(result)
                if progress is not None:
                    progress(result)
    return report
