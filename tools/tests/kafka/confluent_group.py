"""Three confluent-kafka consumers in one group on a 6-partition topic, with a producer writing
throughout: each member first gets two partitions; when one leaves, its partitions move to the
others; every message is consumed once (commits are synchronous, and on revocation).
Usage: confluent_group.py BOOTSTRAP TOPIC GROUP"""
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer

bootstrap, topic, group = sys.argv[1:4]
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
first_assignment = {}
lock = threading.Lock()
leave = {"c0": threading.Event(), "c1": threading.Event(), "c2": threading.Event()}
moved = threading.Event()


def consume(name):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 300})

    def on_assign(cons, parts):
        mine = sorted(p.partition for p in parts)
        first_assignment.setdefault(name, mine)
        if name != "c0" and len(mine) == 3:
            moved.set()

    def on_revoke(cons, parts):
        try:
            cons.commit(asynchronous=False)
        except KafkaException:
            pass

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not leave[name].is_set():
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        with lock:
            v = int(m.value())
            assert v not in seen, f"message {v} consumed twice ({seen[v]} and {name})"
            seen[v] = name
        c.commit(message=m, asynchronous=False)
    c.close()


threads = [threading.Thread(target=consume, args=(n,)) for n in ("c0", "c1", "c2")]
for t in threads:
    t.start()
deadline = time.time() + 30
while len(first_assignment) < 3 and time.time() < deadline:
    time.sleep(0.05)
assert sorted(len(p) for p in first_assignment.values()) == [2, 2, 2], first_assignment
writer = threading.Thread(target=produce)
writer.start()
time.sleep(1.5)
leave["c0"].set()
assert moved.wait(20), "c0's partitions did not move to the others"
writer.join()
deadline = time.time() + 60
while len(seen) < N and time.time() < deadline:
    time.sleep(0.1)
leave["c1"].set()
leave["c2"].set()
for t in threads:
    t.join()
assert len(seen) == N, f"consumed {len(seen)} of {N}"
print("ok", {n: sum(1 for v in seen.values() if v == n) for n in ("c0", "c1", "c2")})
