"""`distilserve check` against our stack (passes) and a broken server (fails), and a
property-based fuzz of every endpoint: >= 10,000 bad inputs, no 5xx, every 4xx names the field,
and good requests are answered exactly as before."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from distilserve.core.names import is_model_name, is_version
from tests.helpers import REPO_ROOT, free_port, one_replica_stack, wait_for

CLI = [sys.executable, "-m", "distilserve.cli.main", "check"]
HEADER_LENGTH = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def stack(ray_session, tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory, admin_token: str):
    with one_replica_stack(tiny_repo, tmp_path_factory.mktemp("reg"), admin_token, "/v2/models/sentiment/ready",
                           120) as url:
        yield {"url": url, "token": admin_token}


def _check(url: str, junit: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "--url", url, "--model", "sentiment", "--junit", str(junit), *extra],
                          capture_output=True, text=True, timeout=240, cwd=REPO_ROOT)


def _junit(path: Path) -> tuple[ET.Element, dict[str, ET.Element]]:
    root = ET.parse(path).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    cases = {f"{c.get('classname', '').rsplit('.', 1)[-1]}/{c.get('name')}": c for c in suite.iter("testcase")}
    assert int(suite.get("tests", "-1")) == len(cases) > 40
    return suite, cases


def test_check_passes_against_our_stack(stack, tmp_path: Path) -> None:
    junit = tmp_path / "check.xml"
    # A generous budget: this asserts the suite's verdict, not this machine's speed.
    proc = _check(stack["url"], junit, "--latency-budget-ms", "30000", "--duration", "2", "--concurrency", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout and "FAIL " not in proc.stdout
    suite, cases = _junit(junit)
    assert suite.get("failures") == "0" and suite.get("skipped") == "0"
    for must in ("validation/oip-deeply-nested-json", "validation/v1-huge-body", "validation/oip-unicode",
                 "output/v1-predict-schema", "errors/still-serving-after-bad-input", "latency/p99"):
        assert must in cases, sorted(cases)


BROKEN_APP = '''
import json
from fastapi import FastAPI, Request

app = FastAPI()

@app.get("/v2/health/live")
@app.get("/v2/health/ready")
@app.get("/v2/models/{model}/ready")
def ok(model: str = ""):
    return {"ready": True}

@app.get("/v2")
def server():
    return {"name": "broken"}  # no version, no extensions

@app.get("/v2/models/{model}")
def meta(model: str):
    return {"name": model, "platform": "x",
            "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "LABEL", "datatype": "BYTES", "shape": [-1]}]}

@app.post("/v2/models/{model}/infer")
async def infer(model: str, request: Request):
    body = json.loads(await request.body())  # any bad input: 500
    n = len(body["inputs"][0]["data"])
    return {"model_name": model, "outputs": [{"name": "LABEL", "datatype": "BYTES", "data": ["positive"] * n}]}

@app.post("/v1/predict")
async def predict(request: Request):
    body = json.loads(await request.body())
    return {"predictions": [{"label": "positive"} for _ in body["inputs"]]}
'''


@pytest.fixture
def broken_server(tmp_path: Path):
    (tmp_path / "broken_app.py").write_text(textwrap.dedent(BROKEN_APP))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "broken_app:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/v2/health/live").status_code == 200, 60, "broken server up")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_check_reports_failures_against_a_broken_server(broken_server: str, tmp_path: Path) -> None:
    junit = tmp_path / "broken.xml"
    proc = _check(broken_server, junit, "--duration", "1", "--concurrency", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout
    suite, cases = _junit(junit)
    failed = {name for name, c in cases.items() if c.find("failure") is not None}
    assert int(suite.get("failures", "0")) == len(failed)
    expected = {"output/server-metadata", "output/oip-infer-schema", "output/v1-predict-schema",
                "validation/oip-malformed-json", "validation/oip-wrong-datatype", "validation/v1-missing-inputs",
                "validation/oip-deeply-nested-json"}
    assert expected <= failed, sorted(failed)
    assert "health/live" not in failed  # what works is still reported as working
    message = cases["validation/oip-malformed-json"].find("failure").get("message")  # type: ignore[union-attr]
    assert "500" in message


# ---- property-based fuzz -----------------------------------------------------------------------------
class Bad(NamedTuple):
    family: str
    method: str
    path: str
    body: bytes
    hints: tuple[str, ...]  # the error must name one of these
    headers: tuple[tuple[str, str], ...] = ()
    admin: bool = False  # send the real admin token


MODEL = "sentiment"
KNOWN_VERSIONS = {"1", "2"}
leaf = (st.none() | st.booleans() | st.integers(-(10**30), 10**30)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
any_json = st.recursive(leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                        max_leaves=6)
non_str = any_json.filter(lambda v: not isinstance(v, str))
weird_text = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Z", "Cc", "Mn")), max_size=16)
blank = st.sampled_from(["", " ", "\t", "\n \r", "\u3000", "\xa0 \u2003"])
long_text = st.integers(2001, 4000).map(lambda n: "y" * n)
bad_model = (weird_text.filter(lambda s: not is_model_name(s))
             | st.from_regex(r"\A[a-z][a-z0-9_-]{0,20}\Z").filter(lambda s: s != MODEL))
bad_version = (weird_text.filter(lambda s: not is_version(s))
               | st.integers(3, 999_999_999).map(str))
raw_bytes = st.binary(max_size=64) | st.sampled_from([b"\xff\xfe\x00", b"{\"inputs\": \"\xc3\x28\"}", b"\x00" * 8])


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _deep(depth: int, inner: bytes = b"") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def _extra_key(fields: set[str]) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=10).filter(
        lambda k: k not in fields)


def _segment(s: str) -> str:
    """A path segment the server decodes back to exactly `s`."""
    return quote(s, safe="").replace(".", "%2E")


path_safe = lambda s: bool(s) and "/" not in s and s.strip(".") != ""  # noqa: E731 - filters


@st.composite
def v1_predict(draw: st.DrawFn) -> Bad:
    base = {"model": MODEL, "inputs": ["fine text"]}
    kind = draw(st.sampled_from(["inputs-type", "item-type", "blank", "too-many", "too-long", "extra", "model",
                                 "version", "user_id", "raw", "non-object", "deep", "huge-number"]))
    hints: tuple[str, ...] = (kind,)
    if kind == "inputs-type":
        base["inputs"], hints = draw(non_str.filter(lambda v: not isinstance(v, list))), ("inputs",)
    elif kind == "item-type":
        items = draw(st.lists(st.text(min_size=1).filter(str.strip), max_size=3))
        items.insert(draw(st.integers(0, len(items))), draw(non_str))
        base["inputs"], hints = items, ("inputs",)
    elif kind == "blank":
        base["inputs"], hints = ["ok", draw(blank)], ("inputs",)
    elif kind == "too-many":
        base["inputs"], hints = ["ok"] * draw(st.integers(65, 300)), ("inputs",)
    elif kind == "too-long":
        base["inputs"], hints = [draw(long_text)], ("inputs",)
    elif kind == "extra":
        key = draw(_extra_key(set(base) | {"user_id", "version"}))
        base[key], hints = draw(any_json), (key,)
    elif kind == "model":
        base["model"], hints = draw(bad_model | non_str), ("model",)
    elif kind == "version":
        base["version"], hints = draw(bad_version | non_str.filter(lambda v: v is not None)), ("version",)
    elif kind == "user_id":
        base["user_id"] = draw(non_str.filter(lambda v: v is not None) | st.just("") | st.just("u" * 129))
        hints = ("user_id",)
    if kind == "raw":
        return Bad("v1", "POST", "/v1/predict", draw(raw_bytes), ("body", "inputs"))
    if kind == "non-object":
        return Bad("v1", "POST", "/v1/predict", _j(draw(any_json.filter(lambda v: not isinstance(v, dict)))), ("body",))
    if kind == "deep":
        return Bad("v1", "POST", "/v1/predict", b'{"inputs": ' + _deep(draw(st.integers(2, 3000))) + b"}",
                   ("inputs", "body"))
    if kind == "huge-number":
        number = draw(st.sampled_from([b"1e999", b"-1e999", b"9" * 5000, b"1" + b"0" * 400 + b".5"]))
        return Bad("v1", "POST", "/v1/predict", b'{"inputs": [' + number + b"]}", ("inputs", "body"))
    return Bad("v1", "POST", "/v1/predict", _j(base), hints)


@st.composite
def v1_feedback(draw: st.DrawFn) -> Bad:
    base: dict = {"request_id": "no-such-request", "label": "positive"}
    kind = draw(st.sampled_from(["request_id", "unknown", "label", "outcome", "neither", "extra", "raw"]))
    if kind == "raw":
        return Bad("feedback", "POST", "/v1/feedback", draw(raw_bytes), ("body", "request_id"))
    hints: tuple[str, ...] = (kind,)
    if kind == "request_id":
        base["request_id"] = draw(non_str | st.just("") | st.just("r" * 65))
    elif kind == "unknown":
        base["request_id"], hints = draw(st.text(min_size=1, max_size=64)), ("request_id",)
    elif kind == "label":
        base["label"] = draw(non_str.filter(lambda v: v is not None) | st.just("") | st.just("l" * 65))
    elif kind == "outcome":
        base.pop("label")
        base["outcome"] = draw(non_str.filter(lambda v: v not in (0, 1, None) or isinstance(v, bool)))
    elif kind == "neither":
        base.pop("label")
        hints = ("label", "outcome")
    elif kind == "extra":
        key = draw(_extra_key({"request_id", "label", "outcome"}))
        base[key], hints = draw(any_json), (key,)
    return Bad("feedback", "POST", "/v1/feedback", _j(base), hints)


def _tensor(**over: object) -> dict:
    return {"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["fine text"], **over}


@st.composite
def oip_json(draw: st.DrawFn) -> Bad:
    path = draw(st.sampled_from([f"/v2/models/{MODEL}/infer", f"/v2/models/{MODEL}/versions/1/infer"]))
    kind = draw(st.sampled_from(["raw", "non-object", "inputs", "two-tensors", "tensor-type", "name", "datatype",
                                 "shape", "data-type", "data-item", "blank", "too-many", "too-long", "outputs",
                                 "id", "parameters", "tensor-parameters", "deep", "huge-number"]))
    body: object = {"inputs": [_tensor()]}
    hints: tuple[str, ...] = (kind,)
    if kind == "raw":
        return Bad("oip", "POST", path, draw(raw_bytes), ("body", "inputs"))
    if kind == "non-object":
        body, hints = draw(any_json.filter(lambda v: not isinstance(v, dict))), ("body",)
    elif kind == "inputs":
        body, hints = {"inputs": draw(any_json.filter(lambda v: not (isinstance(v, list) and v)))}, ("inputs",)
    elif kind == "two-tensors":
        body, hints = {"inputs": [_tensor(), _tensor(name="TEXT2")]}, ("inputs",)
    elif kind == "tensor-type":
        body, hints = {"inputs": [draw(non_str.filter(lambda v: not isinstance(v, dict)))]}, ("inputs[0]",)
    elif kind == "name":
        body = {"inputs": [_tensor(name=draw(any_json.filter(lambda v: v != "TEXT")))]}
    elif kind == "datatype":
        body = {"inputs": [_tensor(datatype=draw(any_json.filter(lambda v: v != "BYTES")))]}
    elif kind == "shape":
        body = {"inputs": [_tensor(shape=draw(any_json.filter(lambda v: v not in ([1], [1, 1]))))]}
    elif kind == "data-type":
        body, hints = {"inputs": [_tensor(data=draw(non_str.filter(lambda v: not isinstance(v, list))))]}, ("data",)
    elif kind == "data-item":
        item = draw(non_str.filter(lambda v: not isinstance(v, list)) | st.lists(st.lists(st.text(), min_size=1),
                                                                                  min_size=1))
        body, hints = {"inputs": [_tensor(data=["ok", item], shape=[2])]}, ("data",)
    elif kind == "blank":
        body, hints = {"inputs": [_tensor(data=[draw(blank)])]}, ("data",)
    elif kind == "too-many":
        n = draw(st.integers(65, 300))
        body, hints = {"inputs": [_tensor(data=["ok"] * n, shape=[n])]}, ("data",)
    elif kind == "too-long":
        body, hints = {"inputs": [_tensor(data=[draw(long_text)])]}, ("data",)
    elif kind == "outputs":
        outs = draw(non_str.filter(lambda v: v is not None and not isinstance(v, list))
                    | st.lists(any_json.filter(lambda v: not (isinstance(v, dict) and v.get("name") in
                                                             ("PROBABILITIES", "LABEL"))), min_size=1, max_size=3))
        body, hints = {"inputs": [_tensor()], "outputs": outs}, ("outputs",)
    elif kind == "id":
        body = {"inputs": [_tensor()], "id": draw(non_str.filter(lambda v: v is not None))}
    elif kind in ("parameters", "tensor-parameters"):
        value = draw(non_str.filter(lambda v: bool(v) and not isinstance(v, dict)))
        body = ({"inputs": [_tensor()], "parameters": value} if kind == "parameters"
                else {"inputs": [_tensor(parameters=value)]})
        hints = ("parameters",)
    elif kind == "deep":
        inner = draw(st.sampled_from([b"", b'"x"']))
        return Bad("oip", "POST", path, b'{"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": '
                   + _deep(draw(st.integers(3, 5000)), inner) + b"}]}", ("data", "body"))
    elif kind == "huge-number":
        number = draw(st.sampled_from([b"1e999", b"9" * 5000, b"-" + b"9" * 300]))
        return Bad("oip", "POST", path, b'{"inputs": [{"name": "TEXT", "shape": [' + number
                   + b'], "datatype": "BYTES", "data": ["a"]}]}', ("shape", "body"))
    return Bad("oip", "POST", path, _j(body), hints)


def _bytes_tensor(items: list[bytes]) -> bytes:
    return b"".join(len(x).to_bytes(4, "little") + x for x in items)


@st.composite
def oip_binary(draw: st.DrawFn) -> Bad:
    """Triton's binary tensor extension: a JSON header of HEADER_LENGTH bytes, then raw tensors."""
    path = f"/v2/models/{MODEL}/infer"
    items = draw(st.lists(st.text(min_size=1, max_size=8).filter(str.strip), min_size=1, max_size=3))
    raw = _bytes_tensor([x.encode() for x in items])
    header = {"inputs": [{"name": "TEXT", "shape": [len(items)], "datatype": "BYTES",
                          "parameters": {"binary_data_size": len(raw)}}]}
    head = _j(header)
    kind = draw(st.sampled_from(["length-text", "length-negative", "length-huge", "size-mismatch", "truncated",
                                 "non-utf8", "no-size", "bad-header-json"]))
    length, hints = str(len(head)), ("binary_data_size",)
    body = head + raw
    if kind == "length-text":
        length = draw(st.text(st.characters(codec="ascii", min_codepoint=33, max_codepoint=126), max_size=10).filter(
            lambda s: not _is_int(s)))
        hints = (HEADER_LENGTH,)
    elif kind == "length-negative":
        length, hints = str(draw(st.integers(max_value=-1, min_value=-(10**30)))), (HEADER_LENGTH,)
    elif kind == "length-huge":
        length, hints = str(len(body) + draw(st.integers(1, 10**30))), (HEADER_LENGTH,)
    elif kind == "size-mismatch":
        header["inputs"][0]["parameters"]["binary_data_size"] = draw(
            any_json.filter(lambda v: v != len(raw) or isinstance(v, bool)))
        head = _j(header)
        body, length = head + raw, str(len(head))
    elif kind == "truncated":
        cut = draw(st.integers(1, len(raw) - 1))
        header["inputs"][0]["parameters"]["binary_data_size"] = len(raw) - cut
        head = _j(header)
        body, length, hints = head + raw[:-cut], str(len(head)), ("inputs[0]",)
    elif kind == "non-utf8":
        bad = _bytes_tensor([b"ok", draw(st.sampled_from([b"\xff", b"\xc3\x28", b"a\xe2\x82", b"\xed\xa0\x80"]))])
        header["inputs"][0]["parameters"]["binary_data_size"] = len(bad)
        header["inputs"][0]["shape"] = [2]
        head = _j(header)
        body, length, hints = head + bad, str(len(head)), ("inputs[0].data",)
    elif kind == "no-size":
        header["inputs"][0].pop("parameters")
        head = _j(header)
        body, length, hints = head + raw, str(len(head)), ("body",)
    elif kind == "bad-header-json":
        junk = draw(raw_bytes.filter(lambda b: not _is_json(b)))
        body, length, hints = junk + raw, str(len(junk)), ("body",)
    return Bad("binary", "POST", path, body, hints, ((HEADER_LENGTH, length),
                                                     ("Content-Type", "application/octet-stream")))


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def _is_json(b: bytes) -> bool:
    try:
        json.loads(b)
    except (ValueError, RecursionError):
        return False
    return True


@st.composite
def metadata_paths(draw: st.DrawFn) -> Bad:
    model_seg = bad_model.filter(path_safe)
    if draw(st.booleans()):
        m = draw(model_seg)
        suffix = draw(st.sampled_from(["", "/ready", "/versions/1", "/versions/1/ready"]))
        infer = draw(st.booleans())
        path = f"/v2/models/{_segment(m)}" + ("/infer" if infer else suffix)
        return Bad("paths", "POST" if infer else "GET", path, _j({"inputs": [_tensor()]}) if infer else b"",
                   ("model",))
    v = draw(bad_version.filter(path_safe))
    suffix = draw(st.sampled_from(["", "/ready", "/infer"]))
    return Bad("paths", "POST" if suffix == "/infer" else "GET", f"/v2/models/{MODEL}/versions/{_segment(v)}{suffix}",
               _j({"inputs": [_tensor()]}) if suffix == "/infer" else b"", ("version",))


@st.composite
def admin(draw: st.DrawFn) -> Bad:
    action = draw(st.sampled_from(["", "/traffic", "/deploy", "/rollback"]))
    method = "GET" if action == "" else "POST"
    path = f"/admin/models/{MODEL}{action}"
    if action == "" or draw(st.booleans()):  # no or wrong credentials
        token = st.text(st.characters(codec="ascii", min_codepoint=33, max_codepoint=126), max_size=40)
        scheme = draw(st.sampled_from(["Bearer", "bearer", "Basic", "Token", ""]))
        value = draw(st.none() | token.map(lambda t: f"{scheme} {t}".strip()))
        headers = () if value is None else (("Authorization", value),)
        return Bad("admin", method, path, _j({"weights": {"1": 100}}), ("authorization",), headers)
    if draw(st.integers(0, 9)) == 0:
        m = draw(bad_model.filter(lambda s: path_safe(s) and s != MODEL))
        return Bad("admin", method, f"/admin/models/{_segment(m)}{action}", b"{}", ("model",), admin=True)
    unknown = st.integers(3, 10**6).map(str) | st.text(max_size=6).filter(lambda s: s not in KNOWN_VERSIONS)
    if action == "/traffic":
        field = draw(st.sampled_from(["weights", "reason", "extra"]))
        body: dict = {"weights": {"999": 100}}
        if field == "weights":
            body["weights"] = draw(non_str.filter(lambda v: not isinstance(v, dict))
                                   | st.dictionaries(unknown, st.floats(-1e9, 1e9) | st.integers(-5, 200),
                                                     max_size=3))
    elif action == "/deploy":
        field = draw(st.sampled_from(["version", "warm", "reason", "extra"]))
        body = {"version": "999"}
        if field == "version":
            body["version"] = draw(bad_version | non_str)
        elif field == "warm":
            body["warm"] = draw(non_str.filter(lambda v: not isinstance(v, bool)))
    else:
        field = draw(st.sampled_from(["to_version", "reason", "extra"]))
        body = {"to_version": draw(bad_version | non_str.filter(lambda v: v is not None))}
        if field != "to_version":
            body["to_version"] = "999"  # unknown, so even a valid body is refused
    hints: tuple[str, ...] = (field,)
    if field == "reason":
        body["reason"] = draw(non_str | st.just("") | st.just("r" * 501))
    elif field == "extra":
        key = draw(_extra_key({"weights", "reason", "version", "warm", "to_version"}))
        body[key], hints = draw(any_json), (key,)
    return Bad("admin", "POST", path, _j(body), hints, admin=True)


bad_request = st.one_of(v1_predict(), v1_feedback(), oip_json(), oip_binary(), metadata_paths(), admin())

BATCH = 40
EXAMPLES = 260  # 260 x 40 = 10,400 bad inputs
GOOD = ["I love this, it works wonderfully", "this is terrible and broken", "meh, it is fine I guess"]
ODD_BUT_VALID = ["Ünïcödé ✓ 日本語 😀", "bell\x07 null\x00 esc\x1b[31m", "\u200b zero width", "x" * 2000,
                 "مرحبا שלום", "\ufeffbom", "tab\tnewline\n", "🙂" * 500]


def _good_answers(client: httpx.Client) -> tuple[dict, dict]:
    v1 = client.post("/v1/predict", json={"model": MODEL, "inputs": GOOD})
    oip = client.post(f"/v2/models/{MODEL}/infer", json={"id": "g", "inputs": [_tensor(data=GOOD, shape=[3])]})
    assert v1.status_code == 200 and oip.status_code == 200, (v1.text, oip.text)
    return v1.json()["predictions"], {o["name"]: o["data"] for o in oip.json()["outputs"]}


def _judge(bad: Bad, r: httpx.Response) -> str | None:
    where = f"{bad.family} {bad.method} {bad.path[:80]} {bad.body[:100]!r} -> {r.status_code} {r.text[:200]!r}"
    if r.status_code >= 500:
        return f"server fault: {where}"
    if not 400 <= r.status_code < 500:
        return f"bad input accepted: {where}"
    try:
        message = r.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"4xx is not JSON {{'error'}}: {where}"
    if not any(h.lower() in message.lower() for h in bad.hints):
        return f"error does not name any of {bad.hints}: {where}"
    return None


def test_fuzz_every_endpoint_then_good_requests_still_answer(stack) -> None:
    token = {"Authorization": f"Bearer {stack['token']}"}
    sent: Counter[str] = Counter()
    problems: list[str] = []
    with httpx.Client(base_url=stack["url"], timeout=60,
                      limits=httpx.Limits(max_connections=16, max_keepalive_connections=16)) as client, \
            ThreadPoolExecutor(max_workers=12, thread_name_prefix="fuzz") as pool:
        before = _good_answers(client)
        traffic = client.get(f"/admin/models/{MODEL}", headers=token).json()["traffic"]

        def send(bad: Bad) -> str | None:
            headers = dict(bad.headers) | (token if bad.admin else {})
            if bad.method == "POST" and "Content-Type" not in headers:
                headers["Content-Type"] = "application/json"
            r = client.request(bad.method, bad.path, content=bad.body or None, headers=headers)
            return _judge(bad, r)

        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=(Phase.generate, Phase.shrink),
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(bad_request, min_size=BATCH, max_size=BATCH))
        def fuzz(batch: list[Bad]) -> None:
            found = [p for p in pool.map(send, batch) if p]
            sent.update(b.family for b in batch)
            assert not found, "\n".join(found[:5])

        try:
            fuzz()
        except AssertionError as e:
            problems.append(str(e))
        assert not problems, problems[0][:3000]
        assert sum(sent.values()) >= 10_000, sent
        assert all(sent[f] > 500 for f in ("v1", "feedback", "oip", "binary", "paths", "admin")), sent

        # Afterwards: the same answers to the same good requests, odd-but-valid texts served, state intact.
        after = _good_answers(client)
        assert [p["label"] for p in after[0]] == [p["label"] for p in before[0]]
        for a, b in zip(after[0], before[0], strict=True):
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
        assert after[1]["LABEL"] == before[1]["LABEL"]
        assert after[1]["PROBABILITIES"] == pytest.approx(before[1]["PROBABILITIES"], abs=1e-5)
        odd = client.post("/v1/predict", json={"model": MODEL, "inputs": ODD_BUT_VALID})
        assert odd.status_code == 200 and len(odd.json()["predictions"]) == len(ODD_BUT_VALID), odd.text
        assert client.get(f"/admin/models/{MODEL}", headers=token).json()["traffic"] == traffic
        assert client.get("/v2/health/ready").status_code == 200


def test_fuzz_judge_can_fail() -> None:
    """The oracle itself: a 5xx, an accepted bad input and a vague 4xx are each caught."""
    bad = Bad("v1", "POST", "/v1/predict", b"{}", ("inputs",))
    req = httpx.Request("POST", "http://x/v1/predict")
    assert _judge(bad, httpx.Response(500, json={"error": "inputs"}, request=req))
    assert _judge(bad, httpx.Response(200, json={}, request=req))
    assert _judge(bad, httpx.Response(422, json={"error": "something is wrong"}, request=req))
    assert _judge(bad, httpx.Response(422, text="inputs", request=req))
    assert _judge(bad, httpx.Response(422, json={"error": "inputs: Field required"}, request=req)) is None

