#!/bin/bash
# Three rounds; in each, every setting once, the order rotated. Idle machine only.
cd "$(dirname "$0")/../../.." || exit 1
out=benchmarks/results/probe-batch-yield-20261202/runs.jsonl
settings=("64 2" "16 1" "8 1" "8 2")
for round in 0 1 2; do
  for k in 0 1 2 3; do
    s=${settings[$(( (k + round) % 4 ))]}
    .venv/bin/python benchmarks/results/probe-batch-yield-20261202/probe.py model_repository $s >> "$out" 2>/dev/null
  done
done
