#!/bin/bash
# Does load shedding, on by default since 2026-12-02 (slo_ms 2000), cost the serving path anything
# when nothing is shed? Triton direct, the stack as shipped, and the stack with shedding off;
# three runs, target order rotated; idle machine.
cd "$(dirname "$0")/../../.."  # the repository root
D=benchmarks/results/overhead-20261202
mkdir -p $D /tmp/exp
run() {  # run-name targets
  echo "$(date -u +%FT%TZ) $1 $2 loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
  .venv/bin/python -m loadtests.bench_overhead --version 1 --targets "$2" \
    --concurrency 8,16 --duration 8 --warmup 2 --out $D/$1 > /tmp/exp/overhead-20261202-$1.log 2>&1
  echo "  rc=$?" >> $D/order.txt
}
run r1 "triton,stack,stack@shedding.enabled=false"
run r2 "stack,stack@shedding.enabled=false,triton"
run r3 "stack@shedding.enabled=false,triton,stack"
echo "$(date -u +%FT%TZ) done" >> $D/order.txt
