#!/bin/bash
# The stack's idle tax: the lean local Ray (serving/ray_env.py LEAN_LOCAL_RAY, the default: `stack`)
# against Ray's own defaults. Three repeats, order rotated; run on an idle machine.
cd "$(dirname "$0")/../../.."  # the repository root
D=benchmarks/results/idle-20261201
echo "$(date -u +%FT%TZ) start loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
.venv/bin/python -m loadtests.bench_idle --repeats 3 --settle 15 --seconds 20 --out $D \
  --targets "stack,stack@RAY_enable_metrics_collection=1+RAY_task_events_report_interval_ms=1000+RAY_SERVE_CONTROL_LOOP_INTERVAL_S=0.1" \
  > $D/log.txt 2>&1
echo "  rc=$?" >> $D/order.txt
echo "$(date -u +%FT%TZ) done loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
