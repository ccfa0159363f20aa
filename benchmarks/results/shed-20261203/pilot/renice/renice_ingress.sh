#!/bin/bash
# renice every thread of the Ingress replica to $1, as soon as it exists, and keep doing so (new threads)
N=$1
while true; do
  for p in $(pgrep -f "ServeReplica:.*Ingress"); do
    for t in /proc/$p/task/*; do renice -n $N -p $(basename $t) >/dev/null 2>&1; done
  done
  sleep 2
done
