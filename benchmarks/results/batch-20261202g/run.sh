#!/bin/bash
# Item 6 after the batch job stops its own Triton at once (no 2.5 s graceful exit; 2026-12-02
# 23:00 UTC): five runs of the issue's own command, back to back, as ../batch-20261202f. Rule, fixed before any result:
# item 6 holds again if the median of the five steady-state ratios is >= 0.9 and the median of the
# five end-to-end ratios is >= 0.6. Idle machine only; do not change the working tree while it runs.
cd "$(dirname "$0")/../../.." || exit 1
out=benchmarks/results/batch-20261202g
for run in 0 1 2 3 4; do
  echo "$(date -u +%H:%M:%S) run $run load $(cut -d' ' -f1 /proc/loadavg)" >> "$out/order.txt"
  .venv/bin/python loadtests/bench_batch.py --rows 2000 --out "$out/default-$run.json" > "$out/default-$run.log" 2>&1
done
echo "$(date -u +%H:%M:%S) done" >> "$out/order.txt"
