#!/bin/bash
# Start-up time, RSS and open files of `rill serve` holding N partitions (one record each,
# small-vm profile), after a clean stop. Usage: scripts/startup-bench.sh N (build release first).
N=${1:-1000}; W=${WORK:-/tmp/rill-startup}; mkdir -p $W; D=$W/data$N; R=${RILL:-./target/release/rill}
rm -rf $D
start() { $R serve --data-dir $D --profile small-vm --native-listen 127.0.0.1:19300 --kafka-listen 127.0.0.1:19092 > $W/out$N 2>$W/err$N & PID=$!; }
wait_up() { for i in $(seq 1 6000); do grep -q "rill listening on" $W/out$N 2>/dev/null && grep -c "rill listening" $W/out$N | grep -q 2 && return; sleep 0.01; done; echo "not up"; }
start; wait_up
$R --broker 127.0.0.1:19300 topic create p --partitions $N >/dev/null || echo create failed
seq 1 $N | awk '{print "k"$1":v"$1}' | $R --broker 127.0.0.1:19300 produce --topic p --key-separator : >/dev/null || echo produce failed
kill -TERM $PID; wait $PID
T0=$(date +%s.%N); start; wait_up; T1=$(date +%s.%N)
RSS=$(awk '/VmRSS/{print $2}' /proc/$PID/status); FDS=$(ls /proc/$PID/fd | wc -l)
echo "partitions=$N startup_s=$(echo "$T1 - $T0" | bc) rss_kib=$RSS fds=$FDS"
kill -TERM $PID; wait $PID
