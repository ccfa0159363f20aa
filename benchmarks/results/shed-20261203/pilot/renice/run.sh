cd /work/main
D=/tmp/pilot/out
COMMON="--slo-ms 30 --set shedding.min_queue=2 --set batching.calls_per_instance=2 --set shedding.min_call_texts=1"
for arm in nice0 nice10 nice0 nice10; do
  mkdir -p $D/$arm
  w=""
  if [ $arm = nice10 ]; then /tmp/pilot/renice_ingress.sh 10 & w=$!; fi
  echo "$(date -u +%FT%TZ) $arm loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
  .venv/bin/python -m loadtests.bench_shed $COMMON --concurrency 1,2,4,8 --duration 10 \
    --server-cpus 1 --client-cpus 0 --out $D/$arm > $D/$arm.log 2>&1
  echo "  rc=$?" >> $D/order.txt
  [ -n "$w" ] && kill $w
  pgrep -f "ServeReplica:.*Ingress" && echo "ingress still up" >> $D/order.txt
done
echo done >> $D/order.txt
