#!/bin/bash
# A 2,000-row job on a serving replica (local executor, the auto choice): the new defaults
# (calls of about 100 ms, one in flight) against the old ones (64 texts, two in flight).
# Three rounds, the order alternated. Idle machine only.
cd "$(dirname "$0")/../../.." || exit 1
out=benchmarks/results/batch-20261202
for round in 0 1 2; do
  for k in 0 1; do
    if (( (k + round) % 2 == 0 )); then name=budget; extra=(); else name=old; extra=(--max-call-ms 0 --inflight 2); fi
    echo "$(date -u +%H:%M:%S) round $round $name load $(cut -d' ' -f1 /proc/loadavg)" >> "$out/order.txt"
    .venv/bin/python loadtests/bench_batch.py --rows 2000 --backend serving "${extra[@]}" \
      --out "$out/$name-$round.json" > "$out/$name-$round.log" 2>&1
  done
done
