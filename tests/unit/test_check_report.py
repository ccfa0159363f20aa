"""`distilserve check` report: text and JUnit XML rendering, verdicts. Pure."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from distilserve.check.cases import Case
from distilserve.check.report import CheckResult, Report
from distilserve.check.schema import error_problems, oip_infer_problems, v1_predict_problems
from distilserve.check.suite import judge


def _report() -> Report:
    r = Report("http://127.0.0.1:9 model=m")
    r.add(CheckResult("health", "live", "pass", duration_s=0.01))
    r.add(CheckResult("validation", "oip-malformed-json", "fail", "status 500,\nexpected a 4xx", 0.02))
    r.add(CheckResult("output", "v1-predict-schema", "skip", "target has no /v1/predict"))
    return r


def test_text_report_lists_every_check_and_the_verdict() -> None:
    text = _report().render_text()
    assert "  PASS  health/live" in text
    assert "  FAIL  validation/oip-malformed-json  status 500, expected a 4xx" in text  # one line
    assert "  SKIP  output/v1-predict-schema  target has no /v1/predict" in text
    assert text.rstrip().endswith("FAILED: 1 passed, 1 failed, 1 skipped")


def test_junit_xml_counts_and_cases() -> None:
    root = ET.fromstring(_report().to_junit_xml())
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    failed = cases[("distilserve.check.validation", "oip-malformed-json")]
    failure = failed.find("failure")
    assert failure is not None and failure.get("message") == "status 500, expected a 4xx"
    assert failed.get("time") == "0.020"
    assert cases[("distilserve.check.output", "v1-predict-schema")].find("skipped") is not None
    assert cases[("distilserve.check.health", "live")].find("failure") is None


def test_junit_xml_survives_control_characters_in_server_replies() -> None:
    r = Report("t")
    r.add(CheckResult("validation", "v1-control", "fail", "server said 'bad\x00\x07\x1b[31m' & <b>"))
    root = ET.fromstring(r.to_junit_xml())  # raises on characters XML 1.0 cannot hold
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.text == "server said 'bad\\x00\\x07\\x1b[31m' & <b>"


@pytest.mark.parametrize(
    ("outcomes", "passed"),
    [
        (["pass", "pass"], True),
        (["pass", "skip"], True),  # skips do not fail a run
        (["pass", "fail"], False),
        (["skip"], False),  # nothing checked is not a pass
        ([], False),
    ],
    ids=["all-pass", "pass-and-skip", "one-failure", "only-skips", "empty"],
)
def test_verdict(outcomes: list, passed: bool) -> None:
    r = Report("t", [CheckResult("c", str(i), o) for i, o in enumerate(outcomes)])
    assert r.passed is passed


def test_check_result_of_joins_problems() -> None:
    assert CheckResult.of("c", "n", []).outcome == "pass"
    r = CheckResult.of("c", "n", ["a is wrong", "b is wrong"])
    assert (r.outcome, r.detail, r.id) == ("fail", "a is wrong; b is wrong", "c/n")


REFUSE = Case("oip", "wrong-datatype", b"", "4xx", ("datatype",))
LEGAL = Case("oip", "control", b"", "not5xx")
GOOD = Case("v1", "unicode", b"", "ok", n=1)
V1_OK = {"model": "m", "version": "1", "request_id": "r",
         "predictions": [{"label": "pos", "scores": {"pos": 0.7, "neg": 0.3}}]}


@pytest.mark.parametrize(
    ("case", "status", "body", "fails"),
    [
        (REFUSE, 400, {"error": "inputs[0].datatype: must be 'BYTES'"}, False),
        (REFUSE, 400, {"error": "bad request"}, True),  # does not name the field
        (REFUSE, 400, {"detail": "inputs[0].datatype"}, True),  # not {"error": ...}
        (REFUSE, 500, {"error": "datatype"}, True),  # a server fault for a client's input
        (REFUSE, 200, V1_OK, True),  # accepted what must be refused
        (LEGAL, 200, {}, False),
        (LEGAL, 422, {"error": "inputs[0]: control characters"}, False),
        (LEGAL, 503, {"error": "x"}, True),
        (GOOD, 200, V1_OK, False),
        (GOOD, 200, {**V1_OK, "predictions": []}, True),  # wrong item count
        (GOOD, 422, {"error": "inputs"}, True),
    ],
    ids=["refused-naming-field", "refused-vaguely", "refused-not-oip-error", "server-fault", "accepted-bad",
         "legal-accepted", "legal-refused", "legal-5xx", "good-ok", "good-wrong-schema", "good-refused"],
)
def test_judge(case: Case, status: int, body: dict, fails: bool) -> None:
    assert bool(judge(case, status, body, "m")) is fails


def test_schema_problems_name_what_is_wrong() -> None:
    good = {"model_name": "m", "id": "x", "outputs": [
        {"name": "LABEL", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
        {"name": "PROBABILITIES", "datatype": "FP32", "shape": [2, 2], "data": [0.5, 0.5, 0.1, 0.9]}]}
    assert oip_infer_problems(good, "m", "x", 2, {"LABEL", "PROBABILITIES"}) == []
    bad = {"model_name": "m", "outputs": [{"name": "LABEL", "datatype": "STRING", "shape": [2], "data": ["a"]}]}
    problems = " | ".join(oip_infer_problems(bad, "m", "x", 2))
    assert "id is None" in problems and "datatype 'STRING'" in problems and "holds 1 elements" in problems
    wrong_label = {**V1_OK, "predictions": [{"label": "neg", "scores": {"pos": 0.7, "neg": 0.3}}]}
    assert "not the top-scoring label" in v1_predict_problems(wrong_label, "m", 1)[0]
    assert error_problems(400, {"error": "Model: x"}, ("model",)) == []  # case-insensitive
