cd /work/main
D=/tmp/pilot/out2
COMMON="--slo-ms 30 --set shedding.min_queue=2 --set batching.calls_per_instance=2 --set shedding.min_call_texts=1"
for arm in own shared own shared; do
  mkdir -p $D/$arm
  extra=""; [ $arm = own ] && extra="--ingress-cpus 0"
  echo "$(date -u +%FT%TZ) $arm loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> $D/order.txt
  .venv/bin/python -m loadtests.bench_shed $COMMON --concurrency 1,2,4,8 --duration 10 \
    --server-cpus 1 --client-cpus 0 $extra --out $D/$arm > $D/$arm.log 2>&1
  echo "  rc=$?" >> $D/order.txt
done
echo done >> $D/order.txt
