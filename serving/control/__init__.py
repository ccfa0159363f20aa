"""serving/control: the control plane's I/O around the pure decisions in `serving/rollout/`.

The rollout controller (`rollouts`: read metrics, call `decide()`, apply, record, notify), the
stored rollout document (`rollout_doc`), starting a rollout (`rollout_start`), the Prometheus
metrics source (`metrics_source`), webhooks, the traffic timeline, and what the admin API may
do (`admin`: traffic, warm versions, rollout commands). This package may use the
registry, HTTP and the clock; `serving/rollout/` may not. The controller application
(`controller`) runs them in the cluster and publishes the traffic `snapshot` the ingress reads.
"""
