#!/bin/bash
# Item 4 with today's code (admission rule of e6eae4b, estimator of f73d97f/bd8ca44): the best
# setting of shed-20261201c (slo_ms 40, min_queue 4, two paced calls per instance), as shipped
# (a: calls under shedding.min_call_texts = 8 texts do not update the estimate) and with every call
# measured as before (b: min_call_texts 1). 3 runs each, alternated; stack on CPU 1, client on CPU 0.
cd "$(dirname "$0")/../../.."  # the repository root
D=benchmarks/results/shed-20261202
COMMON="--slo-ms 40 --set shedding.min_queue=4 --set batching.calls_per_instance=2"
for spec in "a|" "b|--set shedding.min_call_texts=1" "b|--set shedding.min_call_texts=1" "a|" "a|" "b|--set shedding.min_call_texts=1"; do
  extra=${spec#*|}
  echo "$(date -u +%FT%TZ) ${spec%%|*} $extra loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
  .venv/bin/python -m loadtests.bench_shed $COMMON $extra --concurrency 1,2,4,8 --duration 10 \
    --server-cpus 1 --client-cpus 0 --out $D > /dev/null 2>&1
  echo "  rc=$?" >> $D/order.txt
done
echo "$(date -u +%FT%TZ) done" >> $D/order.txt
