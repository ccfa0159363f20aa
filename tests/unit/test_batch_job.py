"""`distilserve batch run`: which running replica's Triton a `--backend serving` job uses, and which executor runs a job (pure)."""

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


@pytest.mark.parametrize(("requested", "backend", "actors", "endpoint_node", "driver_node", "cluster", "executor"), [
    # auto: local only where the one actor would run on the driver's node anyway
    ("auto", "serving", 1, "n1", "n1", True, "local"),  # pinned to the replica's node, this one
    ("auto", "serving", 2, "n1", "n1", True, "ray"),
    ("auto", "serving", 1, "n2", "n1", True, "ray"),
    ("auto", "triton", 1, None, None, False, "local"),  # no cluster: a one-node Ray for one actor
    ("auto", "torch", 1, None, None, False, "local"),
    ("auto", "triton", 2, None, None, False, "ray"),  # several actors: Ray Data runs them side by side
    ("auto", "triton", 1, None, None, True, "ray"),  # a cluster: the actor may go to another node
    ("auto", "torch", 1, None, None, True, "ray"),
    # ray: always, whatever the placement
    ("ray", "serving", 1, "n1", "n1", True, "ray"),
    ("ray", "triton", 1, None, None, False, "ray"),
    ("ray", "triton", 4, None, None, True, "ray"),
    # local: asked for, one predictor
    ("local", "triton", 1, None, None, True, "local"),
    ("local", "torch", 1, None, None, False, "local"),
    ("local", "serving", 1, "n1", "n1", True, "local"),
])
def test_choose_executor(requested: str, backend: str, actors: int, endpoint_node: str | None,
                         driver_node: str | None, cluster: bool, executor: str) -> None:
    from serving.batch.job import choose_executor

    assert choose_executor(requested, backend, actors, endpoint_node, driver_node, cluster) == executor


@pytest.mark.parametrize(("backend", "actors", "endpoint_node", "message"), [
    ("triton", 2, None, "got actors=2"),
    ("serving", 3, "n1", "got actors=3"),
    ("serving", 1, "n2", "chosen one is on node n2, this driver on n1"),
])
def test_local_executor_refuses_what_it_cannot_run(backend: str, actors: int, endpoint_node: str | None,
                                                  message: str) -> None:
    from serving.batch.job import choose_executor

    with pytest.raises(ValueError, match=f"executor: local.*{message}"):
        choose_executor("local", backend, actors, endpoint_node, "n1")
