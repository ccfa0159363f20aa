#!/bin/bash
# Probe: does libgomp's spin-wait (torch's OpenMP threads spin ~300k iterations after each parallel
# region before sleeping) cost the stack at c=16, where the ingress and Ray share the 2 cores with the
# model? Triton direct and the stack, each with and without OMP_WAIT_POLICY=PASSIVE in the whole
# benchmark's environment (Triton direct's tritonserver and the stack's Ray inherit it), 3 rounds,
# order rotated; idle machine.
cd "$(dirname "$0")/../../.."  # the repository root
D=benchmarks/results/probe-omp-20261202
mkdir -p $D /tmp/exp
run() {  # run-name policy(default|passive) targets
  echo "$(date -u +%FT%TZ) $1 $2 $3 loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
  if [ "$2" = passive ]; then export OMP_WAIT_POLICY=PASSIVE; else unset OMP_WAIT_POLICY; fi
  .venv/bin/python -m loadtests.bench_overhead --version 1 --targets "$3" \
    --concurrency 8,16 --duration 8 --warmup 2 --out $D/$1 > /tmp/exp/probe-omp-$1.log 2>&1
  echo "  rc=$?" >> $D/order.txt
  unset OMP_WAIT_POLICY
}
run r1-default default "triton,stack"
run r1-passive passive "stack,triton"
run r2-passive passive "triton,stack"
run r2-default default "stack,triton"
run r3-default default "stack,triton"
run r3-passive passive "triton,stack"
echo "$(date -u +%FT%TZ) done" >> $D/order.txt
