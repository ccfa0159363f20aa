"""The ingress's snapshot-backed view: routing from the controller's snapshot, predictions handed
over in batches, no database; a failing controller delays, never loses, rows."""

from __future__ import annotations

import threading

import pytest

from serving.control.snapshot import ModelReads, Snapshot, next_snapshot
from serving.control.snapshot_view import MAX_PENDING, SnapshotView

LABELS = ["negative", "neutral", "positive"]


class FakeController:
    """`snapshot(since, wait)` and `record_predictions(rows)` as the Controller answers them."""

    def __init__(self) -> None:
        self.snap = next_snapshot(None, {"m": ModelReads(weights={"1": 100.0}, versions={"1": LABELS})})
        self.changed = threading.Condition()
        self.rows: list[list] = []
        self.fail_sends = 0

    def fetch(self, since: int, wait: float) -> dict:
        with self.changed:
            self.changed.wait_for(lambda: self.snap.revision != since, timeout=wait)
            return self.snap.model_dump(mode="json")

    def send(self, rows: list[list]) -> int:
        if self.fail_sends:
            self.fail_sends -= 1
            raise ConnectionError("controller restarting")
        self.rows += rows
        return len(rows)

    def publish(self, reads: dict[str, ModelReads]) -> None:
        with self.changed:
            self.snap = next_snapshot(self.snap, reads)
            self.changed.notify_all()


def test_configured_models_until_the_first_snapshot_then_the_snapshots() -> None:
    ctl = FakeController()
    view = SnapshotView(["m"], ctl.fetch, ctl.send, start=False)
    assert view.models == ["m"] and view.tables == {} and view.revision == 0
    view.refresh()
    assert view.revision == 1 and view.models == ["m"]
    table = view.tables["m"]
    assert table.weights == {"1": 100.0} and table.salt == "m" and table.revision == 1
    assert view.versions == {"m": {"1"}} and view.labels("m", "1") == LABELS and view.labels("m", "9") is None


def test_apply_ignores_the_same_revision_and_drops_tables_without_traffic() -> None:
    ctl = FakeController()
    view = SnapshotView(["m"], ctl.fetch, ctl.send, start=False)
    assert view.apply(ctl.fetch(-1, 0)) is True
    assert view.apply(ctl.fetch(-1, 0)) is False  # same revision: nothing to do
    ctl.publish({"m": ModelReads(weights={"1": 100.0}, versions={"1": LABELS}), "new": ModelReads(versions={"1": LABELS})})
    assert view.apply(ctl.fetch(-1, 0)) is True
    assert view.models == ["m", "new"] and "new" not in view.tables and view.versions["new"] == {"1"}


def test_a_restarting_controllers_empty_snapshot_is_not_applied() -> None:
    """A controller replica restarted by Serve holds revision 0 (nothing read yet) until its first
    pass; routing goes on by the last snapshot instead of answering 503 "no live version"."""
    ctl = FakeController()
    view = SnapshotView(["m"], ctl.fetch, ctl.send, start=False)
    assert view.apply(ctl.fetch(-1, 0)) is True
    assert view.apply(Snapshot(revision=0).model_dump(mode="json")) is False
    assert view.revision == 1 and view.tables["m"].weights == {"1": 100.0}
    # Its first publish (a new revision sequence) is applied as usual.
    restarted = next_snapshot(None, {"m": ModelReads(weights={"2": 100.0}, versions={"2": LABELS})},
                              first_revision=1_764_540_000_000)
    assert view.apply(restarted.model_dump(mode="json")) is True and view.tables["m"].weights == {"2": 100.0}


def test_background_poll_follows_changes() -> None:
    ctl = FakeController()
    view = SnapshotView(["m"], ctl.fetch, ctl.send, wait_s=5.0)
    try:
        _wait(lambda: view.revision == 1)
        ctl.publish({"m": ModelReads(weights={"1": 90.0, "2": 10.0}, shadow_version="3", shadow_share=5.0,
                                     versions={"1": LABELS, "2": LABELS, "3": LABELS})})
        _wait(lambda: view.revision == 2)  # the long poll returns on the change, not after wait_s
        table = view.tables["m"]
        assert table.weights == {"1": 90.0, "2": 10.0} and table.shadow_version == "3" and table.shadow_share == 5.0
    finally:
        view.close()


def test_predictions_are_batched_and_kept_while_the_controller_fails() -> None:
    ctl = FakeController()
    view = SnapshotView(["m"], ctl.fetch, ctl.send, start=False)
    ctl.fail_sends = 1
    view.record("r1", "m", "1", "positive", None)
    view.record("r2", "m", "1", "negative", "u")
    view.flush()  # fails: both rows stay
    assert ctl.rows == []
    view.record("r3", "m", "1", "neutral", None)
    view.flush()
    assert [r[0] for r in ctl.rows] == ["r1", "r2", "r3"]  # one batch, in order
    assert ctl.rows[1][:5] == ["r2", "m", "1", "negative", "u"] and isinstance(ctl.rows[1][5], float)


def test_pending_rows_are_bounded_while_the_controller_is_down() -> None:
    ctl = FakeController()
    view = SnapshotView(["m"], ctl.fetch, ctl.send, start=False)
    ctl.fail_sends = 1
    for i in range(MAX_PENDING + 5):
        view.record(f"r{i}", "m", "1", "positive", None)
    view.flush()
    view.flush()
    assert len(ctl.rows) == MAX_PENDING and ctl.rows[0][0] == "r5"  # the 5 oldest were dropped


def _wait(check, timeout: float = 5.0) -> None:  # noqa: ANN001 - a predicate
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.01)


def test_feedback_goes_to_the_controller_after_the_buffered_predictions() -> None:
    from serving.registry.errors import RegistryError, UnknownRequestError

    ctl = FakeController()
    answers = iter([{}, {"error": "unknown_request", "message": "no r9"}, {"error": "registry", "message": "bad"}])
    seen: list[tuple] = []

    def feedback(request_id: str, label: str | None, outcome: int | None) -> dict:
        seen.append((request_id, label, outcome, len(ctl.rows)))
        return next(answers)

    view = SnapshotView(["m"], ctl.fetch, ctl.send, feedback, start=False)
    view.record("r1", "m", "1", "positive", None)
    view.record_feedback("r1", "positive", None)
    assert seen == [("r1", "positive", None, 1)]  # the prediction reached the controller first
    with pytest.raises(UnknownRequestError, match="no r9"):
        view.record_feedback("r9", None, 1)
    with pytest.raises(RegistryError, match="bad"):
        view.record_feedback("r1", None, 7)


def test_controller_admin_raises_its_errors_and_refreshes_after_changes() -> None:
    import asyncio

    from serving.control.snapshot_view import ControllerAdmin
    from serving.errors import ApiError

    calls: list[tuple] = []
    refreshed: list[int] = []

    async def call(method: str, model: str, *args: object) -> dict:
        calls.append((method, model, *args))
        if method == "rollback":
            return {"error": {"status": 409, "message": "no previous version", "headers": {}}}
        return {"ok": {"method": method}}

    admin = ControllerAdmin(call, lambda: refreshed.append(1))

    async def scenario() -> None:
        assert await admin.status("m") == {"method": "status"}
        assert refreshed == []  # a read changes nothing
        await admin.set_traffic("m", {"1": 100.0}, "why")
        assert refreshed == [1]
        with pytest.raises(ApiError) as err:
            await admin.rollback("m", None, "why")
        assert err.value.status == 409 and err.value.message == "no previous version"

    asyncio.run(scenario())
    assert calls[1] == ("set_traffic", "m", {"1": 100.0}, "why")


def test_a_long_poll_overtaken_by_a_refresh_does_not_put_the_old_snapshot_back() -> None:
    ctl = FakeController()
    view = SnapshotView(["m"], ctl.fetch, ctl.send, start=False)
    view.refresh()
    real_fetch = ctl.fetch

    def overtaken_fetch(since: int, wait: float) -> dict:
        if since < 0:
            return real_fetch(since, wait)
        ctl.publish({"m": ModelReads(weights={"1": 50.0, "2": 50.0}, versions={"1": LABELS, "2": LABELS})})
        old = real_fetch(since, wait)  # the poll's answer: revision 2 ...
        ctl.publish({"m": ModelReads(weights={"2": 100.0}, versions={"1": LABELS, "2": LABELS})})
        view.refresh()  # ... overtaken by an admin command's refresh (revision 3) before it is applied
        return old

    view.fetch = overtaken_fetch
    assert view.poll_once(0.0) is False
    assert view.revision == 3 and view.tables["m"].weights == {"2": 100.0}
    view.fetch = real_fetch
    ctl.publish({"m": ModelReads(weights={"1": 100.0}, versions={"1": LABELS, "2": LABELS})})
    assert view.poll_once(0.0) is True and view.revision == 4  # an undisturbed poll applies its answer
