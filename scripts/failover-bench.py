#!/usr/bin/env python3
"""Failover time of a replicated partition (issue 14's measurement).

Starts three `rill serve` nodes on loopback, creates a one-partition topic with three replicas,
and runs a producer (confluent-kafka, acks=all, idempotent) and a consumer against it. Each
round kills the partition's leader with SIGKILL and measures, from the kill:
- the time to the first acknowledged produce (an ack for a message sent after the kill);
- the time to the first consumed record produced after the kill;
then restarts the killed node and waits until all three replicas are in sync again.

Usage: scripts/failover-bench.py [rounds] [path to rill]   (default 20, target/release/rill)
Prints each round and the median, p99 and max of both times.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
rill = sys.argv[2] if len(sys.argv) > 2 else "target/release/rill"
work = tempfile.mkdtemp(prefix="rill-failover-")
base = 19500 + os.getpid() % 200 * 10
seeds = ",".join(f"{i}@127.0.0.1:{base + i}" for i in (1, 2, 3))
kafka = {i: f"127.0.0.1:{base + 100 + i}" for i in (1, 2, 3)}
subprocess.run([rill, "cluster", "ca", "init", "--dir", f"{work}/tls"], check=True, capture_output=True)
for i in (1, 2, 3):
    subprocess.run([rill, "cluster", "cert", "issue", "--node-id", str(i), "--dir", f"{work}/tls"],
                   check=True, capture_output=True)
procs = {}


def start(i):
    log = open(f"{work}/node-{i}.log", "a")
    procs[i] = subprocess.Popen(
        [rill, "serve", "--data-dir", f"{work}/data-{i}", "--profile", "small-vm", "--cores", "0",
         "--native-listen", f"127.0.0.1:{base + 50 + i}", "--kafka-listen", kafka[i],
         "--admin-listen", f"127.0.0.1:{base + 70 + i}", "--node-id", str(i),
         "--cluster-listen", f"127.0.0.1:{base + i}", "--seeds", seeds, "--cluster-tls-dir", f"{work}/tls"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def metadata():
    admin = AdminClient({"bootstrap.servers": ",".join(kafka.values())})
    return admin.list_topics("failover", timeout=5).topics["failover"].partitions[0]


def wait(what, f, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = f()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


try:
    for i in (1, 2, 3):
        start(i)
    admin = AdminClient({"bootstrap.servers": ",".join(kafka.values())})
    wait("the topic", lambda: admin.create_topics([NewTopic("failover", 1, 3)])["failover"].result(10) or True)
    wait("three in sync", lambda: len(metadata().isrs) == 3)
    acks = []  # (ack time, send time)
    lock = threading.Lock()
    stop = threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": ",".join(kafka.values()), "acks": "all", "enable.idempotence": True,
                      "linger.ms": 1, "topic.metadata.refresh.interval.ms": 500, "retry.backoff.ms": 20,
                      "retry.backoff.max.ms": 100})

        def done(err, msg):
            if err is None:
                with lock:
                    acks.append((time.time(), float(msg.value())))
        while not stop.is_set():
            p.produce("failover", value=b"%.6f" % time.time(), partition=0, on_delivery=done)
            p.poll(0.002)
        p.flush(30)

    consumed = []  # (receive time, send time)

    def consume():
        c = Consumer({"bootstrap.servers": ",".join(kafka.values()), "group.id": "failover-bench",
                      "enable.auto.commit": False, "topic.metadata.refresh.interval.ms": 500,
                      "fetch.wait.max.ms": 50, "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 100})
        c.assign([TopicPartition("failover", 0, 0)])
        while not stop.is_set():
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                consumed.append((time.time(), float(m.value())))
        c.close()

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    time.sleep(3)
    produce_times, consume_times = [], []
    for r in range(rounds):
        leader = wait("a leader", lambda: metadata().leader if metadata().leader > 0 else None)
        killed_at = time.time()
        procs[leader].send_signal(signal.SIGKILL)
        procs[leader].wait()
        first_ack = wait("an ack after the kill", lambda: next((a for a, s in list(acks) if s > killed_at), None))
        first_read = wait("a record after the kill", lambda: next((a for a, s in list(consumed) if s > killed_at), None))
        produce_times.append(first_ack - killed_at)
        consume_times.append(first_read - killed_at)
        print(f"round {r}: node {leader} killed; first ack after {produce_times[-1]:.3f} s, "
              f"first consumed after {consume_times[-1]:.3f} s", flush=True)
        start(leader)
        wait("three in sync", lambda: len(metadata().isrs) == 3)
        time.sleep(1)
    stop.set()
    for t in threads:
        t.join()

    def summary(name, xs):
        xs = sorted(xs)
        p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
        print(f"{name}: median {xs[len(xs) // 2]:.3f} s, p99 {p99:.3f} s, max {xs[-1]:.3f} s over {len(xs)} kills")
    summary("first acknowledged produce", produce_times)
    summary("first consumed record", consume_times)
finally:
    for p in procs.values():
        p.kill()
    shutil.rmtree(work, ignore_errors=True)
