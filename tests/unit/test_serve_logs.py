"""The controller's log: into Serve's replica log file, and followed by the foreground `serve`."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from serving.serve_logs import LogFollower, controller_logs, log_into_serve, shown

ACCESS = ("INFO 2026-11-30 23:15:22,740 controller_Controller m9zudkwl 59f117de-8117 -- "
          "CALL snapshot OK 10004.0ms")
LEADING = "INFO 2026-11-30 23:15:01,002 controller_Controller m9zudkwl -- controller leading: models ['s']"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(LEADING + "\n", LEADING, id="a-decision-is-shown"),
        pytest.param(ACCESS, None, id="an-access-line-is-not"),
        pytest.param("   \n", None, id="blank"),
        pytest.param("Traceback (most recent call last):\r\n", "Traceback (most recent call last):", id="tracebacks"),
    ],
)
def test_shown(line: str, expected: str | None) -> None:
    assert shown(line) == expected


def test_follower_prints_complete_lines_of_every_file_once(tmp_path: Path) -> None:
    logs = tmp_path / "session_latest" / "logs" / "serve"
    logs.mkdir(parents=True)
    got: list[str] = []
    follower = LogFollower(controller_logs(tmp_path), got.append, prefix="c| ")
    first = logs / "replica_controller_Controller_a.log"
    first.write_text(LEADING + "\n" + ACCESS + "\nhalf a li")
    (logs / "replica_ingress_Ingress_x.log").write_text("not the controller's\n")
    follower.poll()
    assert got == ["c| " + LEADING]
    with first.open("a") as f:
        f.write("ne\n")
    # A restarted controller replica writes a file of its own.
    (logs / "replica_controller_Controller_b.log").write_text("WARNING standing by\n")
    follower.poll()
    follower.poll()  # nothing new: nothing printed twice
    assert got == ["c| " + LEADING, "c| half a line", "c| WARNING standing by"]


def test_follower_thread_stops_and_drains(tmp_path: Path) -> None:
    logs = tmp_path / "session_latest" / "logs" / "serve"
    logs.mkdir(parents=True)
    got: list[str] = []
    follower = LogFollower(controller_logs(tmp_path), got.append, poll_s=60.0).start()
    (logs / "replica_controller_Controller_a.log").write_text("INFO shutting down\n")
    follower.stop()  # the last poll runs on stop, not after the 60 s wait
    assert got == ["controller| INFO shutting down"]


def test_our_records_reach_the_serve_loggers_handlers() -> None:
    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    serve_logger, ours = logging.getLogger("ray.serve"), logging.getLogger("distilserve")
    saved = (list(ours.handlers), ours.level, ours.propagate)
    handler = Collect()
    serve_logger.addHandler(handler)
    try:
        log_into_serve()
        log_into_serve()  # twice (a second replica in the process): still one copy per record
        logging.getLogger("distilserve.controller").info("controller leading: %s", ["s"])
        assert handler.messages == ["controller leading: ['s']"]
    finally:
        serve_logger.removeHandler(handler)
        ours.handlers[:], ours.level, ours.propagate = saved
