#!/bin/bash
# What live requests pay while a batch job shares their replica's Triton (2026-12-02 17:20 UTC): the
# 2,000-row job on a serving replica with a live client beside it (one text to /v1/predict at a time,
# 50 ms between answers, for the job's whole run), shipped default (full calls until live traffic is
# seen) against --budget-when-idle (the budget from the start). Two rounds, order alternated.
# Reported: live p50/p99 over the job, and over its first 5 s (before the job has seen the live
# traffic, it may send full calls). Idle machine only; do not change the tree while it runs.
cd "$(dirname "$0")/../../.." || exit 1
out=benchmarks/results/batch-live-20261202
for round in 0 1; do
  for k in 0 1; do
    if (( (k + round) % 2 == 0 )); then name=default; extra=(); else name=budget; extra=(--budget-when-idle); fi
    echo "$(date -u +%H:%M:%S) round $round $name load $(cut -d' ' -f1 /proc/loadavg)" >> "$out/order.txt"
    .venv/bin/python loadtests/bench_batch.py --rows 2000 --backend serving --live-pause-ms 50 "${extra[@]}" \
      --out "$out/$name-$round.json" > "$out/$name-$round.log" 2>&1
  done
done
echo "$(date -u +%H:%M:%S) done" >> "$out/order.txt"
