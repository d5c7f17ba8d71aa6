#!/usr/bin/env bash
# Sequential `rill topic create` against a fresh single node: milliseconds per create
# (CLI start included).  ./scripts/admin-bench.sh path/to/rill [count]
set -euo pipefail
BIN=$1; N=${2:-100}
D=$(mktemp -d)
$BIN serve --data-dir "$D" --profile small-vm --native-listen 127.0.0.1:19400 --kafka-listen 127.0.0.1:19190 >"$D.log" 2>&1 &
P=$!
sleep 1.5
start=$(date +%s.%N)
for i in $(seq 1 "$N"); do $BIN topic create "t$i" --partitions 1 --broker 127.0.0.1:19400 >/dev/null; done
end=$(date +%s.%N)
kill $P; wait $P 2>/dev/null || true
rm -rf "$D" "$D.log"
awk -v a="$start" -v b="$end" -v n="$N" 'BEGIN {printf "%.2f ms per create\n", (b - a) * 1000 / n}'
