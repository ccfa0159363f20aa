#!/bin/bash
# Item 3 probe: does leaving batching to Triton's own dynamic batcher (the ingress sends each
# request at once, batching.enabled=false) close the gap at c=16 that paced batching leaves?
# Triton direct, the shipped stack and the stack without ingress batching; shipped config
# (1 instance x 2 threads); three runs, target order rotated; idle machine.
cd "$(dirname "$0")/../../.."  # the repository root
D=benchmarks/results/overhead-20261201g
mkdir -p $D /tmp/exp
run() {  # run-name targets
  echo "$(date -u +%FT%TZ) $1 $2 loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
  .venv/bin/python -m loadtests.bench_overhead --version 1 --targets "$2" \
    --concurrency 8,16 --duration 8 --warmup 2 --out $D/$1 > /tmp/exp/item3g-$1.log 2>&1
  echo "  rc=$?" >> $D/order.txt
}
run r1 "triton,stack,stack@batching.enabled=false"
run r2 "stack,stack@batching.enabled=false,triton"
run r3 "stack@batching.enabled=false,triton,stack"
echo "$(date -u +%FT%TZ) done" >> $D/order.txt
