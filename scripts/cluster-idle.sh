#!/usr/bin/env bash
# The cost of the metadata group at idle: CPU seconds and RSS of three idle cluster nodes on
# loopback against one idle single node, measured in the same run over the same interval.
#   ./scripts/cluster-idle.sh [seconds]        (default 20; builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_IDLE=${1:-20}
cargo build --release -q -p rill-tools
R=$PWD/target/release/rill
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT
$R cluster ca init --dir "$T/tls" >/dev/null
for i in 1 2 3; do $R cluster cert issue --node-id $i --dir "$T/tls" >/dev/null; done
SEEDS=1@127.0.0.1:19501,2@127.0.0.1:19502,3@127.0.0.1:19503
for i in 1 2 3; do
  $R serve --data-dir "$T/d$i" --profile small-vm --cores 0 --native-listen 127.0.0.1:1930$i \
    --kafka-listen 127.0.0.1:1909$i --admin-listen 127.0.0.1:1964$i --node-id $i --cluster-listen 127.0.0.1:1950$i --seeds $SEEDS \
    --cluster-tls-dir "$T/tls" >"$T/n$i.log" 2>&1 &
done
$R serve --data-dir "$T/single" --profile small-vm --cores 0 --native-listen 127.0.0.1:19300 \
  --kafka-listen 127.0.0.1:19090 --admin-listen 127.0.0.1:19640 >"$T/single.log" 2>&1 &
sleep 5
pids=$(jobs -p)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A before
for p in $pids; do before[$p]=$(ticks "$p"); done
sleep "$SECONDS_IDLE"
hz=$(getconf CLK_TCK)
i=0
for p in $pids; do
  i=$((i + 1))
  name=$([ $i -le 3 ] && echo "cluster node $i" || echo "single node")
  cpu=$(awk -v d="$(($(ticks "$p") - ${before[$p]}))" -v hz="$hz" -v s="$SECONDS_IDLE" 'BEGIN {printf "%.2f", d / hz / s * 100}')
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$p/status")
  echo "$name: ${cpu}% of a CPU, RSS ${rss} KiB"
done
