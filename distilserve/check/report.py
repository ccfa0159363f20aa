"""Check results and their two renderings: a text report for people, JUnit XML for CI. Pure."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["pass", "fail", "skip"]

# XML 1.0 cannot carry most control characters, even escaped; server replies may hold them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class CheckResult:
    """One check: `category/name`, its outcome and a one-line reason."""

    category: str
    name: str
    outcome: Outcome
    detail: str = ""
    duration_s: float = 0.0

    @property
    def id(self) -> str:
        return f"{self.category}/{self.name}"

    @classmethod
    def of(cls, category: str, name: str, problems: list[str], ok_detail: str = "",
           duration_s: float = 0.0) -> CheckResult:
        """Pass when `problems` is empty, else fail with them joined as the detail."""
        if problems:
            return cls(category, name, "fail", "; ".join(problems), duration_s)
        return cls(category, name, "pass", ok_detail, duration_s)


@dataclass
class Report:
    target: str
    results: list[CheckResult] = field(default_factory=list)

    def add(self, result: CheckResult) -> None:
        self.results.append(result)

    def count(self, outcome: Outcome) -> int:
        return sum(r.outcome == outcome for r in self.results)

    @property
    def passed(self) -> bool:
        """True when no check failed (skipped checks do not fail a run) and at least one ran."""
        return self.count("fail") == 0 and self.count("pass") > 0

    def render_text(self) -> str:
        lines = [f"distilserve check: {self.target}"]
        for r in self.results:
            tag = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[r.outcome]
            detail = f"  {_one_line(r.detail)}" if r.detail else ""
            lines.append(f"  {tag}  {r.id}{detail}")
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"{verdict}: {self.count('pass')} passed, {self.count('fail')} failed, "
                     f"{self.count('skip')} skipped")
        return "\n".join(lines) + "\n"

    def to_junit_xml(self, suite_name: str = "distilserve-check") -> str:
        total = sum(r.duration_s for r in self.results)
        suites = ET.Element("testsuites", name=suite_name, tests=str(len(self.results)),
                            failures=str(self.count("fail")), errors="0", skipped=str(self.count("skip")),
                            time=_seconds(total))
        suite = ET.SubElement(suites, "testsuite", name=suite_name, tests=str(len(self.results)),
                              failures=str(self.count("fail")), errors="0", skipped=str(self.count("skip")),
                              time=_seconds(total))
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="target", value=_xml_text(self.target))
        for r in self.results:
            case = ET.SubElement(suite, "testcase", classname=f"distilserve.check.{_xml_text(r.category)}",
                                 name=_xml_text(r.name), time=_seconds(r.duration_s))
            if r.outcome == "fail":
                failure = ET.SubElement(case, "failure", message=_xml_text(_one_line(r.detail))[:500])
                failure.text = _xml_text(r.detail)
            elif r.outcome == "skip":
                ET.SubElement(case, "skipped", message=_xml_text(_one_line(r.detail))[:500])
            elif r.detail:
                ET.SubElement(case, "system-out").text = _xml_text(r.detail)
        return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _xml_text(text: str) -> str:
    return _XML_ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _seconds(s: float) -> str:
    return f"{max(s, 0.0):.3f}"
