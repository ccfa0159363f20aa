"""Autoscaling that counts requests on the ingress's short path too.

Requests that the ingress sends straight to a replica's Triton (serving/transport/endpoints.py) never
pass through Serve, so Serve's own count of ongoing requests misses them. Each ModelVersion
replica therefore reports `triton_concurrency` (mean requests inside its Triton, from Triton's
request-time counter), and the load this policy scales on is, per replica, the larger of the
two views: Serve's ongoing requests (handle path) or Triton's concurrency (either path; a
request on the handle path is inside Triton most of its time, so the two are not added).

The decision is Serve's default one (load / target_ongoing_requests per replica); Serve wraps
a custom policy with the same min/max bounds and upscale/downscale delays as the default.
"""

from __future__ import annotations

from typing import Any

METRIC = "triton_concurrency"
POLICY = "serving.autoscale_policy:triton_aware_policy"


def desired_replicas(current: int, target: int, serve_requests: float, triton_concurrency: float,
                     target_ongoing: float) -> float:
    """Pure decision: replicas needed so each carries about `target_ongoing` requests."""
    if current == 0:
        return float(target)
    load = max(serve_requests, triton_concurrency)
    return current * (load / (target_ongoing * current))


def triton_aware_policy(ctx) -> tuple[float, dict[str, Any]]:  # noqa: ANN001 - ray.serve.config.AutoscalingContext
    metrics = ctx.aggregated_metrics or {}
    triton = sum(float(v) for v in (metrics.get(METRIC) or {}).values())
    return desired_replicas(ctx.current_num_replicas, ctx.target_num_replicas, float(ctx.total_num_requests), triton,
                            ctx.config.get_target_ongoing_requests()), {}
