"""Test tiers come from the folder: tests/unit, tests/integration, tests/e2e."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests import leaks

# No hub traffic, ever: everything a test needs ships in a wheel or is built in the test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


# -- no Triton process outlives the suite (tests/leaks.py) ------------------------------------
_SESSION_START = time.time() - 1.0
_FIRST_SEEN: dict[int, tuple[str, str]] = {}  # pid -> (module after which it was seen, command line)


@pytest.fixture(scope="module", autouse=True)
def _note_triton_orphans(request: pytest.FixtureRequest):
    yield
    for pid, cmdline in leaks.orphans(_SESSION_START).items():
        _FIRST_SEEN.setdefault(pid, (request.module.__name__, cmdline))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for pid, cmdline in leaks.orphans(_SESSION_START).items():
        _FIRST_SEEN.setdefault(pid, ("the end of the session", cmdline))
    left = leaks.wait_gone(set(_FIRST_SEEN), grace=15.0)
    if not left:
        return
    leaks.kill(left)
    lines = [f"  pid {pid}, first seen after {_FIRST_SEEN[pid][0]}: {_FIRST_SEEN[pid][1]}" for pid in sorted(left)]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line("Triton processes outlived their owners (killed now):\n" + "\n".join(lines), red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- a failed test shows the log of every `distilserve serve` it was talking to ------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        from tests.helpers import SERVE_LOGS

        for path in list(SERVE_LOGS):
            try:
                tail = path.read_text(errors="replace")[-6000:]
            except OSError:
                continue
            report.sections.append((f"serve log {path} (last 6000 characters, {report.when})", tail))
