#!/usr/bin/env bash
# The cost of idle replicated partitions (issue 14's measurement): three `rill serve` nodes on
# loopback (one core each), first with no topic, then with `partitions` partitions of three
# replicas each, idle; CPU and RSS of each node over `seconds` in both phases.
#   ./scripts/replication-idle.sh [partitions] [seconds]    (default 1000 and 20; release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
PARTITIONS=${1:-1000}
SECONDS_IDLE=${2:-20}
R=$PWD/target/release/rill
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 1; rm -rf "$T"' EXIT
ulimit -n 65536 || true
$R cluster ca init --dir "$T/tls" >/dev/null
for i in 1 2 3; do $R cluster cert issue --node-id $i --dir "$T/tls" >/dev/null; done
SEEDS=1@127.0.0.1:19511,2@127.0.0.1:19512,3@127.0.0.1:19513
for i in 1 2 3; do
  $R serve --data-dir "$T/d$i" --profile small-vm --cores 0 --native-listen 127.0.0.1:1931$i \
    --kafka-listen 127.0.0.1:1911$i --admin-listen 127.0.0.1:1966$i --node-id $i \
    --cluster-listen 127.0.0.1:1951$i --seeds $SEEDS --cluster-tls-dir "$T/tls" >"$T/n$i.log" 2>&1 &
done
pids=$(jobs -p)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
measure() {
  declare -A before
  for p in $pids; do before[$p]=$(ticks "$p"); done
  sleep "$SECONDS_IDLE"
  i=0
  for p in $pids; do
    i=$((i + 1))
    cpu=$(awk -v d="$(($(ticks "$p") - ${before[$p]}))" -v hz="$hz" -v s="$SECONDS_IDLE" 'BEGIN {printf "%.2f", d / hz / s * 100}')
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$p/status")
    echo "$1: node $i: ${cpu}% of a CPU, RSS $((rss / 1024)) MiB"
  done
}
sleep 5
measure "no topic"
# Topics of at most 1,000 partitions, each created once the groups before it hibernate (all
# groups electing at once is a storm this measurement is not about; see README).
started=$(date +%s)
made=0
t=0
while [ "$made" -lt "$PARTITIONS" ]; do
  n=$(( PARTITIONS - made < 1000 ? PARTITIONS - made : 1000 ))
  # A creation answered late may be retried into TopicExists: then it is done.
  until out=$($R topic create idle-$t --partitions "$n" --replication-factor 3 --broker 127.0.0.1:19311 2>&1) \
    || grep -q TopicExists <<<"$out"; do sleep 1; done
  made=$((made + n))
  t=$((t + 1))
  for _ in $(seq 900); do
    asleep=0
    for i in 1 2 3; do
      k=$(curl -s 127.0.0.1:1966$i/metrics | awk '/^rill_raft_groups_hibernating/ {s += $2} END {print s + 0}')
      asleep=$((asleep + k))
    done
    [ "$asleep" -ge $((3 * made)) ] && break
    sleep 1
  done
  echo "$made partitions created, $asleep of $((3 * made)) groups hibernating, $(( $(date +%s) - started )) s"
done
sleep 5
measure "$PARTITIONS idle partitions x3 replicas"
for i in 1 2 3; do
  curl -s 127.0.0.1:1966$i/metrics | grep -E '^rill_raft_groups' | awk -v n=$i '{s[$1]+=$2} END {for (k in s) printf "node %s: %s %d\n", n, k, s[k]}' | sed 's/{[^}]*}//'
done
