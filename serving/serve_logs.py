"""The controller's log, in Serve's replica log file, and followed by `distilserve serve`.

Inside a Serve replica only the `ray.serve` logger has handlers (the replica's own log file
under the session's logs/serve/); our `distilserve.*` loggers propagated to a root logger
that writes nowhere, so the controller's decisions (leading, standing by, a failed pass) were
lost. `log_into_serve()` gives them Serve's handlers. `LogFollower` tails those files for the
foreground `distilserve serve`, which prints what the controller says, without the per-call
access lines.
"""

from __future__ import annotations

import glob
import logging
import threading
from collections.abc import Callable
from pathlib import Path

CONTROLLER_LOGS = "logs/serve/replica_controller_*.log"  # under a Ray session directory


def log_into_serve(level: int = logging.INFO) -> None:
    """Send `distilserve.*` records to the Serve replica's own log (call inside a replica)."""
    ours = logging.getLogger("distilserve")
    for handler in logging.getLogger("ray.serve").handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)
    ours.setLevel(level)
    ours.propagate = False


def shown(line: str) -> str | None:
    """The line as printed, or None for what the operator need not see: blank lines and Serve's
    access lines (`... -- CALL snapshot OK 10004.0ms`, one per handle call)."""
    line = line.rstrip("\r\n")
    if not line.strip() or " -- CALL " in line:
        return None
    return line


class LogFollower:
    """Tail every file matching `pattern` (new files too: a restarted controller writes its own)
    on a thread, passing each complete, shown line to `out`."""

    def __init__(self, pattern: str, out: Callable[[str], None], poll_s: float = 0.5, prefix: str = "controller| ") -> None:
        self.pattern, self.out, self.poll_s, self.prefix = pattern, out, poll_s, prefix
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-follower", daemon=True)

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def poll(self) -> None:
        """Read what every matching file gained since the last poll."""
        for path in sorted(glob.glob(self.pattern)):
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets.get(path, 0))
                    data = f.read()
                    self._offsets[path] = f.tell()
            except OSError:
                continue
            text = self._partial.pop(path, "") + data.decode("utf-8", errors="replace")
            *lines, rest = text.split("\n")
            if rest:
                self._partial[path] = rest  # an unfinished line: printed once complete
            for line in lines:
                if (s := shown(line)) is not None:
                    self.out(self.prefix + s)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - following logs must never take the server down
                logging.getLogger("distilserve").debug("log follower poll failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.poll()  # the last lines (a shutdown message) still get out


def controller_logs(session_root: str | Path) -> str:
    """The glob of the controller's log files of the Ray whose temp dir is `session_root`."""
    return str(Path(session_root) / "session_latest" / CONTROLLER_LOGS)
