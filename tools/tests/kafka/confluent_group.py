"""Three confluent-kafka consumers in one group on a 6-partition topic, with a producer writing
throughout: each member first gets two partitions; when one leaves, its partitions move to the
others; every message is consumed, and with the eager assignors exactly once (commits are
synchronous, and on revocation). STRATEGY is the client-side assignor: range, roundrobin or
cooperative-sticky. Under cooperative-sticky members keep consuming while a rebalance completes,
and a commit then is answered REBALANCE_IN_PROGRESS, or ILLEGAL_GENERATION when it was sent with
the generation the group just left (as Kafka does: a commit queued behind the member's JoinGroup
carries the old generation): the member carries on, and what it could not commit may be read
again by the partition's next owner (at least once).
Usage: confluent_group.py BOOTSTRAP TOPIC GROUP [STRATEGY]"""
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

bootstrap, topic, group = sys.argv[1:4]
strategy = sys.argv[4] if len(sys.argv) > 4 else "range"
N = 30_000
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
stop_producing = threading.Event()
sent = [0]


def produce():
    for i in range(N):
        producer.produce(topic, value=str(i).encode(), partition=i % 6)
        sent[0] += 1
        if i % 500 == 499:
            producer.flush()
            time.sleep(0.02)
    producer.flush()


seen = {}
again = [0]
first_assignment = {}
lock = threading.Lock()
leave = {"c0": threading.Event(), "c1": threading.Event(), "c2": threading.Event()}
moved = threading.Event()


def consume(name):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 300,
                  "partition.assignment.strategy": strategy})
    owned = first_assignment.setdefault(name, set())

    # With cooperative-sticky, callbacks name only the partitions added or taken away.
    def on_assign(cons, parts):
        owned.update(p.partition for p in parts)
        if name != "c0" and len(owned) == 3:
            moved.set()

    def on_revoke(cons, parts):
        try:
            cons.commit(asynchronous=False)
        except KafkaException:
            pass
        owned.difference_update(p.partition for p in parts)

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not leave[name].is_set():
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        with lock:
            v = int(m.value())
            if v in seen:
                assert strategy == "cooperative-sticky", f"message {v} consumed twice ({seen[v]} and {name})"
                again[0] += 1
            seen[v] = name
        try:
            c.commit(message=m, asynchronous=False)
        except KafkaException as e:
            rebalancing = (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION)
            if strategy != "cooperative-sticky" or e.args[0].code() not in rebalancing:
                raise
    c.close()


threads = [threading.Thread(target=consume, args=(n,)) for n in ("c0", "c1", "c2")]
for t in threads:
    t.start()
deadline = time.time() + 30
def settled():
    return sorted(len(p) for p in first_assignment.values()) == [2, 2, 2] and \
        set().union(*first_assignment.values()) == set(range(6))


while not settled() and time.time() < deadline:
    time.sleep(0.05)
assert settled(), first_assignment
writer = threading.Thread(target=produce)
writer.start()
time.sleep(1.5)
leave["c0"].set()
assert moved.wait(20), "c0's partitions did not move to the others"
writer.join()
# A liveness bound, not a speed check: each message is committed synchronously, which takes
# long on a loaded machine (CI runs JVM clients beside this test).
deadline = time.time() + 180
while len(seen) < N and time.time() < deadline:
    time.sleep(0.1)
leave["c1"].set()
leave["c2"].set()
for t in threads:
    t.join()
assert len(seen) == N, f"consumed {len(seen)} of {N}"
print("ok", {n: sum(1 for v in seen.values() if v == n) for n in ("c0", "c1", "c2")}, "read again:", again[0])
