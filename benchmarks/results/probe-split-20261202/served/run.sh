#!/bin/bash
# Item 3 probe: model.py running a call of >= 12 texts as two length-sorted halves on two threads
# (1 intra-op thread each), repo copy /tmp/w/repo_split; against the shipped model.py. Triton direct
# and the stack on each; 3 rounds, order rotated; idle machine.
cd /work/main
D=/tmp/w/ov
run() {  # name repo targets
  echo "$(date -u +%FT%TZ) $1 $2 $3 loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
  .venv/bin/python -m loadtests.bench_overhead --repository $2 --version 1 --targets "$3" \
    --concurrency 8,16 --duration 8 --warmup 2 --out $D/$1 > $D/$1.log 2>&1
  echo "  rc=$?" >> $D/order.txt
}
run r1-base model_repository "triton,stack"
run r1-split /tmp/w/repo_split "triton,stack"
run r2-split /tmp/w/repo_split "stack,triton"
run r2-base model_repository "stack,triton"
run r3-base model_repository "triton,stack"
run r3-split /tmp/w/repo_split "triton,stack"
echo "$(date -u +%FT%TZ) done" >> $D/order.txt
