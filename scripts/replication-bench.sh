#!/usr/bin/env bash
# Replication's cost (issue 14's measurement): three `rill serve` nodes on loopback, one
# partition with one replica against one with three, alternately, `rounds` times each, measured
# with `rill bench --protocol kafka` (acks=all, durability always) pointed at the partition's
# leader. Prints each run's produce throughput and publish latency, then the RF=3/RF=1 ratios.
#   scripts/replication-bench.sh [rounds] [extra rill bench flags]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
R=$PWD/target/release/rill
work=$(mktemp -d /tmp/rill-repbench.XXXX)
trap 'kill $(cat $work/pid-* 2>/dev/null) 2>/dev/null; sleep 1; rm -rf $work' EXIT
$R cluster ca init --dir $work/tls >/dev/null
for i in 1 2 3; do $R cluster cert issue --node-id $i --dir $work/tls >/dev/null; done
SEEDS=1@127.0.0.1:19601,2@127.0.0.1:19602,3@127.0.0.1:19603
for i in 1 2 3; do
  $R serve --data-dir $work/data-$i --profile small-vm --native-listen 127.0.0.1:1940$i \
    --kafka-listen 127.0.0.1:1950$i --admin-listen 127.0.0.1:1970$i --node-id $i \
    --cluster-listen 127.0.0.1:1960$i --seeds $SEEDS --cluster-tls-dir $work/tls >$work/log-$i 2>&1 &
  echo $! > $work/pid-$i
done
sleep 4
leader_of() { # topic -> kafka address of its partition 0's leader
  for _ in $(seq 100); do
    l=$(kcat -b 127.0.0.1:19501 -L -t "$1" -m 5 2>/dev/null | sed -n 's/.*partition 0, leader \([0-9]*\),.*/\1/p')
    isr=$(kcat -b 127.0.0.1:19501 -L -t "$1" -m 5 2>/dev/null | sed -n 's/.*isrs: \(.*\)/\1/p' | tr ',' '\n' | wc -l)
    if [ -n "$l" ] && [ "$l" -gt 0 ] && [ "$isr" -ge "$2" ]; then echo "127.0.0.1:1950$l"; return; fi
    sleep 0.2
  done
  echo "no leader for $1" >&2; exit 1
}
for round in $(seq "$rounds"); do
  for rf in 1 3; do
    prefix=rf$rf-r$round
    until $R topic create "$prefix-0" --partitions 1 --replication-factor $rf --durability always \
      --broker 127.0.0.1:19401 >/dev/null 2>&1; do sleep 0.5; done
    broker=$(leader_of "$prefix-0" $rf)
    out=$($R bench --protocol kafka --broker "$broker" --existing-topics --topic-prefix "$prefix" \
      --workload perf/workloads/1-producer-1-partition.toml --json "$@" 2>/dev/null | tr -d '\n' || true)
    echo "rf=$rf round=$round leader=$broker $out" | tee -a $work/results
  done
done
python3 - "$work/results" <<'PY'
import json, re, sys
runs = {1: [], 3: []}
for line in open(sys.argv[1]):
    rf = int(re.match(r"rf=(\d)", line).group(1))
    j = json.loads(line[line.index("{"):])
    runs[rf].append(j)
def mb(j): return j["publish_mb_per_s"]
ratios = [mb(b) / mb(a) for a, b in zip(runs[1], runs[3])]
print("RF=1 MB/s:", [round(mb(j)) for j in runs[1]])
print("RF=3 MB/s:", [round(mb(j)) for j in runs[3]])
print("RF=3/RF=1 per round:", [round(r, 2) for r in ratios])
for rf in (1, 3):
    for j in runs[rf]:
        p = j["publish_latency_us"]
        print("RF=%d publish latency ms: p50 %.1f p99 %.1f p99.9 %.1f" % (rf, p["p50"] / 1e3, p["p99"] / 1e3, p["p999"] / 1e3))
PY
