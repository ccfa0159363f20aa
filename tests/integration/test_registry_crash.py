"""Kill -9 writers in the middle of registry writes; the file must stay readable and consistent.

Two real processes write to one registry file at once (so they also contend for the write
lock), each looping as fast as it can over one grouped transaction (traffic + rollout status +
event, with a rollout finished and the next one started every 10 steps) and one batched
prediction insert. Each prints how many iterations it has committed; the test kills it with
SIGKILL once that count passes a target, then checks invariants with a fresh Registry.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from serving.registry import Registry
from tests.unit.test_registry import make_card

REPO = Path(__file__).resolve().parents[2]
BATCH = 25  # predictions per record_predictions call
ROLLOUT_EVERY = 10

WRITER = f"""
import json, sys
from serving.registry import Registry

reg = Registry(sys.argv[1], timeout=60)
model = sys.argv[2]
i = 0
while True:
    # Irregular fractions: the two weights sum to 100 only within float rounding.
    share = (i * 7.3) % 100
    weights = {{"1": 100.0 - share, "2": share}}
    rollout = f"r{{i // {ROLLOUT_EVERY}}}"
    with reg.transaction():
        if i and i % {ROLLOUT_EVERY} == 0:
            reg.finish_rollout(model, f"r{{i // {ROLLOUT_EVERY} - 1}}", "succeeded")
        reg.set_traffic(model, weights, f"seq {{i}}", actor="crash-test")
        reg.save_rollout(model, rollout, "canary", json.dumps({{"seq": i, "weights": weights}}))
        reg.record_event(model, "rollout.step", f"seq {{i}}", {{"seq": i}}, rollout_id=rollout)
    reg.record_predictions(
        [(f"{{model}}-{{i}}-{{k}}", model, "2", "positive", None, float(i)) for k in range({BATCH})]
    )
    print(i + 1, flush=True)  # i + 1 iterations are committed
    i += 1
"""


class Writer:
    """A writer subprocess, killed by SIGKILL once it reports `target` committed iterations."""

    def __init__(self, script: Path, db: Path, model: str, target: int) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(db), model],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.target = target
        self.seen = 0
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ends at EOF: killed, or died on its own (checked later)
            self.seen = max(self.seen, int(line))
            if self.seen >= self.target and self.proc.returncode is None:
                self.proc.send_signal(signal.SIGKILL)

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        if self.thread.is_alive():  # a hung writer must fail the test, not hang it
            self.proc.kill()
            self.thread.join()
            pytest.fail(f"writer did not reach {self.target} iterations in {timeout}s (saw {self.seen})")
        self.proc.wait()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        assert self.proc.returncode == -signal.SIGKILL, (
            f"writer exited {self.proc.returncode}: {stderr[-2000:]}"
        )


def check_model(reg: Registry, db: Path, model: str, seen: int) -> None:
    history = list(reversed(reg.history(model, limit=10**9)))
    n = len(history)
    # Nothing committed and reported is lost; nothing half-done or out of order is present.
    assert n >= seen
    assert [h.reason for h in history] == [f"seq {i}" for i in range(n)]
    previous: dict[str, float] = {}
    for h in history:
        assert math.isclose(sum(h.traffic.values()), 100.0, abs_tol=1e-6), h
        assert h.previous == previous, h  # each row replaced exactly the row before it
        previous = h.traffic
    assert reg.get_traffic(model) == history[-1].traffic

    # Traffic, rollout status and event were one transaction: all of step n-1 or none of it.
    events = list(reversed(reg.events(model, limit=10**9)))
    assert [e.data["seq"] for e in events] == list(range(n))
    active = reg.load_active_rollout(model)
    assert active is not None
    last = n - 1
    assert active.rollout_id == f"r{last // ROLLOUT_EVERY}"
    assert active.strategy == "canary"
    assert reg.load_active_rollout(model) == active
    status = json.loads(active.status_json)
    assert status["seq"] == last and status["weights"] == history[-1].traffic

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        finished = conn.execute(
            "SELECT COUNT(*) FROM rollouts WHERE model = ? AND active = 0 AND final_phase = 'succeeded'",
            (model,),
        ).fetchone()[0]
        predictions = conn.execute("SELECT COUNT(*) FROM predictions WHERE model = ?", (model,)).fetchone()[0]
    assert finished == last // ROLLOUT_EVERY
    # Each batch is one transaction, committed after its step's transaction: n-1 or n batches.
    assert predictions in (BATCH * (n - 1), BATCH * n), (predictions, n)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "targets",
    [
        pytest.param((3, 17), id="early"),
        pytest.param((41, 9), id="mid"),
        pytest.param((150, 77), id="late"),
        pytest.param((1, 60), id="first-step"),
        pytest.param((250, 5), id="one-long-one-short"),
    ],
)
def test_sigkill_mid_write_leaves_registry_consistent(tmp_path: Path, targets: tuple[int, int]) -> None:
    db = tmp_path / "registry.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    models = ("alpha", "beta")
    with Registry(db) as reg:
        for model in models:
            for v in ("1", "2"):
                reg.register_version(model, v, tmp_path / model / v, make_card(v, model=model))

    writers = [Writer(script, db, model, target) for model, target in zip(models, targets, strict=True)]
    for w in writers:
        w.join(timeout=120)

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with Registry(db) as reg:
        for model, w in zip(models, writers, strict=True):
            check_model(reg, db, model, w.seen)
        # The killed writers' locks are gone: a new writer gets in at once.
        reg.set_traffic("alpha", {"1": 100}, "after the crash")
        assert reg.get_traffic("alpha") == {"1": 100.0}
