"""`distilserve check`: a conformance and robustness suite for any Open Inference Protocol server.

Checks are small functions returning `CheckResult`s; `run_suite` runs them against a URL and
returns a `Report` that renders as text or JUnit XML.
"""

from distilserve.check.report import CheckResult, Report
from distilserve.check.suite import SuiteSettings, run_suite

__all__ = ["CheckResult", "Report", "SuiteSettings", "run_suite"]
