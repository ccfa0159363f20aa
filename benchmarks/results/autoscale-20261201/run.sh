#!/bin/bash
# Item 5 with two model instances per replica (1 torch thread each) against the shipped one
# instance with 2 threads: seconds from the scale-up decision to a new RUNNING replica, torch
# teacher (v1). Three runs each, order alternated; idle machine.
cd "$(dirname "$0")/../../.."  # the repository root
D=benchmarks/results/autoscale-20261201
TWO=/tmp/exp/repo-2x1
mkdir -p $D /tmp/exp $TWO/sentiment
ln -sfn "$PWD/model_repository/sentiment/1" $TWO/sentiment/1
sed -e 's/count: 1/count: 2/' -e 's/string_value: "2"/string_value: "1"/' model_repository/sentiment/config.pbtxt > $TWO/sentiment/config.pbtxt
run() {  # name repository
  echo "$1 start $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
  .venv/bin/python -m loadtests.bench_autoscale --repository "$2" --version 1 --levels 10,100,1000 \
    --duration 60 --tail 20 --out $D/$1 > /tmp/exp/as-$1.log 2>&1
  echo "$1 rc=$? end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
}
run 1x2-1 model_repository; run 2x1-1 $TWO
run 2x1-2 $TWO;             run 1x2-2 model_repository
run 1x2-3 model_repository; run 2x1-3 $TWO
