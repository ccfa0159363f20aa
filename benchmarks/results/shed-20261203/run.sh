#!/bin/bash
# Item 4 with the ingress on its own core (2026-12-03 03:30 UTC, decided before running; this line said 03:55 by mistake until after the runs).
# "own": ingress_cpus=0: the Ingress replica (HTTP listener, shedding gate, data plane) keeps to CPU 0,
#   beside the load client; Ray and the replica's Triton keep CPU 1 (--server-cpus 1). This is the
#   topology a machine with a spare core would use: refusals do not take the model's core.
# "shared": the setting of ../shed-20261202f (everything of the stack on CPU 1, the client on CPU 0).
# Both: slo_ms 30, min_queue 2, two paced calls per instance, every call measured; the shipped repository.
# Eight runs alternated (own first). Decision rule, fixed here before any result: item 4 counts as met
# (for the "own" topology) if, over the four "own" runs, the median goodput at 4x / peak is >= 0.9,
# the median admitted p99 / unloaded p99 is <= 3, and no run has a 5xx or a client timeout. The
# "shared" runs are reported beside them and decide nothing. The client shares CPU 0 with the ingress
# in "own": its schedule lag (client_lag_p99_ms) is reported for every run.
# Idle machine; load average recorded at each start.
cd "$(dirname "$0")/../../.."  # the repository root
D=benchmarks/results/shed-20261203
COMMON="--slo-ms 30 --set shedding.min_queue=2 --set batching.calls_per_instance=2 --set shedding.min_call_texts=1"
for arm in own shared own shared own shared own shared; do
  extra=""; [ $arm = own ] && extra="--set ingress_cpus=0"
  echo "$(date -u +%FT%TZ) $arm loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
  .venv/bin/python -m loadtests.bench_shed $COMMON $extra --concurrency 1,2,4,8 --duration 10 \
    --server-cpus 1 --client-cpus 0 --out $D/$arm > /dev/null 2>&1
  echo "  rc=$?" >> $D/order.txt
done
echo "$(date -u +%FT%TZ) done" >> $D/order.txt
