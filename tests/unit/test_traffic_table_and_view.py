"""Routing choices (pure) and the ingress's registry view."""

from __future__ import annotations

import pytest

from serving.traffic_table import TrafficTable, pick


@pytest.mark.parametrize(
    ("weights", "u", "expected"),
    [
        ({"1": 100}, 0.999, "1"),
        ({"1": 90, "2": 10}, 0.0, "1"),
        ({"1": 90, "2": 10}, 0.8999, "1"),  # cumulative 0.9 is the boundary
        ({"1": 90, "2": 10}, 0.9, "2"),
        ({"2": 10, "1": 90}, 0.5, "1"),  # dict order never matters: numeric order does
        ({"1": 0, "2": 100}, 0.0, "2"),  # zero weight never chosen
        ({"1": 1, "10": 1, "2": 2}, 0.3, "2"),  # order 1, 2, 10: 0.25 | 0.75 | 1.0
    ],
    ids=["single", "first-bucket", "just-below-boundary", "at-boundary", "order-independent", "zero-weight",
         "numeric-not-lexical"],
)
def test_pick(weights: dict, u: float, expected: str) -> None:
    assert pick(weights, u) == expected


def test_pick_without_traffic_raises() -> None:
    with pytest.raises(LookupError):
        pick({"1": 0}, 0.5)


def test_sticky_users_never_flip_and_split_follows_weights() -> None:
    table = TrafficTable(weights={"1": 50, "2": 50}, salt="exp")
    first = {f"user-{i}": table.choose(f"user-{i}", 0.0) for i in range(2000)}
    again = {u: table.choose(u, 0.99) for u in first}  # the random draw is ignored for users
    assert first == again
    share = sum(v == "2" for v in first.values()) / len(first)
    assert 0.45 < share < 0.55  # 2000 users: sd ~0.011, so ±0.05 is > 4 sd


def test_shadow_share() -> None:
    table = TrafficTable(weights={"1": 100}, shadow_version="2", shadow_share=25.0)
    picked = sum(table.shadow_for(f"req-{i}") == "2" for i in range(4000)) / 4000
    assert 0.21 < picked < 0.29
    assert TrafficTable(weights={"1": 100}).shadow_for("x") is None


def test_view_rereads_only_after_another_connection_committed(tmp_path) -> None:  # noqa: ANN001
    from serving.registry import Registry
    from serving.state import RegistryView
    from tests.unit.test_registry import make_card

    db = tmp_path / "r.db"
    writer = Registry(db)
    writer.register_version("m", "1", tmp_path / "m" / "1", make_card("1", model="m"))
    writer.set_traffic("m", {"1": 100}, reason="initial")
    view = RegistryView(db, ["m"], poll_s=3600)  # its own poller stays asleep: the test drives it
    try:
        assert not view.refresh_if_changed()  # nothing committed since the view was built
        view.record("req-1", "m", "1", "positive", None)
        view.flush()  # the view's own write does not count as a change
        assert not view.refresh_if_changed()
        writer.register_version("m", "2", tmp_path / "m" / "2", make_card("2", model="m"))
        writer.set_traffic("m", {"1": 50, "2": 50}, reason="split")
        assert view.refresh_if_changed()
        assert view.tables["m"].weights == {"1": 50.0, "2": 50.0}
    finally:
        view.close()


def test_a_read_that_started_before_a_write_never_replaces_the_newer_table(tmp_path) -> None:  # noqa: ANN001
    """The poller's read is overtaken by an admin write and its refresh: the stale result is dropped."""
    from serving.registry import Registry
    from serving.state import RegistryView
    from tests.unit.test_registry import make_card

    db = tmp_path / "r.db"
    writer = Registry(db)
    for v in ("1", "2"):
        writer.register_version("m", v, tmp_path / "m" / v, make_card(v, model="m"))
    writer.set_traffic("m", {"1": 100}, reason="initial")
    view = RegistryView(db, ["m"], poll_s=3600)
    try:
        real_get_traffic = view.registry.get_traffic
        overtaken: list[bool] = []

        def slow_get_traffic(model: str) -> dict:
            old = real_get_traffic(model)  # the poller has read the old table ...
            if not overtaken:
                overtaken.append(True)
                writer.set_traffic("m", {"2": 100}, reason="rollout")  # ... then an admin call writes
                assert view.refresh()  # and refreshes before the poller publishes
                assert view.tables["m"].weights == {"2": 100.0}
            return old

        view.registry.get_traffic = slow_get_traffic  # type: ignore[method-assign]
        writer.set_traffic("m", {"1": 100}, reason="touch")  # a change for the poller to notice
        assert not view.refresh_if_changed()  # its read is older than the published one: dropped
        assert view.tables["m"].weights == {"2": 100.0}
        assert overtaken
    finally:
        view.close()
