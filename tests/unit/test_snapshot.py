"""The traffic snapshot: a pure function of registry reads; the revision moves only on change."""

from __future__ import annotations

import pytest

from serving.control.snapshot import ModelReads, ModelTraffic, Snapshot, model_traffic, next_snapshot

LABELS = ["negative", "neutral", "positive"]


@pytest.mark.parametrize(
    ("reads", "expected"),
    [
        pytest.param(
            ModelReads(weights={"1": 100.0}, versions={"1": LABELS}),
            ModelTraffic(weights={"1": 100.0}, salt="m", versions=["1"], labels={"1": LABELS}),
            id="one-live-version-salt-defaults-to-model-name",
        ),
        pytest.param(
            ModelReads(weights={"1": 90.0, "2": 10.0, "3": 0.0}, versions={"10": LABELS, "2": LABELS, "1": LABELS}),
            # v3 at 0 % routes nothing; versions sort as numbers: 1 < 2 < 10
            ModelTraffic(weights={"1": 90.0, "2": 10.0}, salt="m", versions=["1", "2", "10"],
                         labels={"1": LABELS, "2": LABELS, "10": LABELS}),
            id="zero-weights-dropped-versions-numeric-order",
        ),
        pytest.param(
            ModelReads(weights={"1": 100.0}, shadow_version="2", shadow_share=25.0, versions={"1": LABELS, "2": LABELS}),
            ModelTraffic(weights={"1": 100.0}, shadow_version="2", shadow_share=25.0, salt="m", versions=["1", "2"],
                         labels={"1": LABELS, "2": LABELS}),
            id="shadow-kept-with-its-share",
        ),
        pytest.param(
            ModelReads(weights={"1": 100.0}, shadow_version="2", shadow_share=0.0, versions={"1": LABELS}),
            ModelTraffic(weights={"1": 100.0}, salt="m", versions=["1"], labels={"1": LABELS}),
            id="shadow-without-share-is-no-shadow",
        ),
        pytest.param(
            ModelReads(weights={"1": 50.0, "2": 50.0}, experiment_salt="exp-7", versions={"1": LABELS, "2": ["a", "b"]}),
            ModelTraffic(weights={"1": 50.0, "2": 50.0}, salt="exp-7", versions=["1", "2"],
                         labels={"1": LABELS, "2": ["a", "b"]}),
            id="ab-test-salt-and-labels-per-version",
        ),
        pytest.param(
            ModelReads(),
            ModelTraffic(weights={}, salt="m", versions=[], labels={}),
            id="new-model-without-traffic",
        ),
    ],
)
def test_model_traffic(reads: ModelReads, expected: ModelTraffic) -> None:
    assert model_traffic("m", reads) == expected


BASE = {"m": ModelReads(weights={"1": 100.0}, versions={"1": LABELS})}


@pytest.mark.parametrize(
    ("previous", "reads", "revision"),
    [
        pytest.param(None, BASE, 1, id="first-publish-is-revision-1"),
        pytest.param(Snapshot(revision=0), {}, 1, id="a-first-publish-with-no-model-is-still-published"),
        pytest.param(next_snapshot(None, BASE), BASE, 1, id="unchanged-reads-keep-the-revision"),
        pytest.param(next_snapshot(None, BASE), {"m": ModelReads(weights={"1": 90.0, "2": 10.0},
                                                                 versions={"1": LABELS, "2": LABELS})},
                     2, id="traffic-change-moves-it"),
        pytest.param(next_snapshot(None, BASE), {**BASE, "other": ModelReads()}, 2, id="new-model-moves-it"),
        pytest.param(next_snapshot(None, BASE), {}, 2, id="model-gone-moves-it"),
        pytest.param(Snapshot(revision=41), BASE, 42, id="counts-on-from-any-revision"),
    ],
)
def test_next_snapshot_revision(previous: Snapshot | None, reads: dict[str, ModelReads], revision: int) -> None:
    snap = next_snapshot(previous, reads)
    assert snap.revision == revision
    if previous is not None and revision == previous.revision:
        assert snap is previous  # the identity tells the controller nothing changed


@pytest.mark.parametrize(
    ("previous", "revision"),
    [
        pytest.param(None, 1_764_540_000_000, id="first-publish-is-the-controllers-start"),
        pytest.param(Snapshot(revision=0), 1_764_540_000_000, id="so-is-the-first-after-the-empty-one"),
        pytest.param(Snapshot(revision=5), 6, id="then-it-counts-on"),
    ],
)
def test_a_restarted_controller_never_republishes_its_predecessors_revisions(previous: Snapshot | None,
                                                                             revision: int) -> None:
    assert next_snapshot(previous, BASE, first_revision=1_764_540_000_000).revision == revision


def test_snapshot_round_trips_through_json() -> None:
    """It crosses a DeploymentHandle as a plain mapping."""
    snap = next_snapshot(None, {"m": ModelReads(weights={"1": 100.0}, shadow_version="2", shadow_share=5.0,
                                                versions={"1": LABELS, "2": LABELS})})
    assert Snapshot.model_validate(snap.model_dump(mode="json")) == snap
