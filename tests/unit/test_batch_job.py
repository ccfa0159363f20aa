"""`distilserve batch run --backend serving`: which running replica's Triton a job uses (pure)."""

from __future__ import annotations

import pytest


def _ep(app: str, node: str, grpc: str, ts: float):  # noqa: ANN202
    from serving.transport.endpoints import Endpoint

    return Endpoint(app=app, replica=grpc, node=node, grpc=grpc, ts=ts)


@pytest.mark.parametrize(
    ("endpoints", "chosen"),
    [
        ([_ep("m-v1", "n1", "127.0.0.1:2", 100.0)], "127.0.0.1:2"),
        ([_ep("m-v1", "n1", "127.0.0.1:3", 100.0), _ep("m-v1", "n1", "127.0.0.1:2", 99.0)], "127.0.0.1:2"),
        # the node with the most replicas of the version wins (the actor is pinned there)
        ([_ep("m-v1", "n1", "127.0.0.1:1", 100.0), _ep("m-v1", "n2", "127.0.0.1:5", 100.0),
          _ep("m-v1", "n2", "127.0.0.1:6", 100.0)], "127.0.0.1:5"),
        # stale and other versions' endpoints are ignored
        ([_ep("m-v1", "n1", "127.0.0.1:1", 80.0), _ep("m-v2", "n1", "127.0.0.1:2", 100.0),
          _ep("m-v1", "n3", "127.0.0.1:9", 95.0)], "127.0.0.1:9"),
    ],
    ids=["one", "stable-order", "busiest-node", "fresh-only"],
)
def test_choose_endpoint(endpoints: list, chosen: str) -> None:
    from serving.batch.job import choose_endpoint

    assert choose_endpoint(endpoints, "m-v1", now=100.0).grpc == chosen


@pytest.mark.parametrize("endpoints", [[], [_ep("m-v1", "n1", "127.0.0.1:1", 80.0)],
                                       [_ep("m-v2", "n1", "127.0.0.1:1", 100.0)]], ids=["none", "stale", "other"])
def test_choose_endpoint_refuses_by_name_without_a_running_replica(endpoints: list) -> None:
    from serving.batch.job import choose_endpoint

    with pytest.raises(ValueError, match="no running replica of m-v1 publishes a Triton"):
        choose_endpoint(endpoints, "m-v1", now=100.0)
