"""Checker for replication under faults (tools/tests/replication.rs).

Runs an idempotent producer (acks=all) writing numbered values to every partition of a topic
for `seconds`, and a consumer reading the same partitions meanwhile, while the test kills and
restarts nodes. Every acknowledgement is recorded (partition, offset, value), and everything
the consumer saw. Then it reads every partition from the beginning to the end and checks:
- every acknowledged record is there exactly once, at its acknowledged offset;
- within a partition, values are in the order they were produced (none reordered);
- no value is in the log twice (the idempotent producer's retries were recognised);
- everything the consumer saw during the faults is still there, at the same offset.

Prints "ok <acked> <seen>" on success, else exits with a message.
"""
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic, partitions, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

acked = {}  # value -> (partition, offset)
failed = []
lock = threading.Lock()


def delivered(err, msg):
    with lock:
        if err is not None:
            failed.append(str(err))
        else:
            acked[msg.value()] = (msg.partition(), msg.offset())


producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "message.timeout.ms": 120000,
    "topic.metadata.refresh.interval.ms": 1000,
})

seen = {}  # (partition, offset) -> value
stop = threading.Event()


def consume():
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "replication-checker-live",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    while not stop.is_set():
        msg = consumer.poll(0.2)
        if msg is None or msg.error() is not None:
            continue
        key = (msg.partition(), msg.offset())
        before = seen.setdefault(key, msg.value())
        if before != msg.value():
            sys.exit("the live consumer saw two values at %s" % (key,))
    consumer.close()


reader = threading.Thread(target=consume)
reader.start()
start = time.time()
n = 0
while time.time() - start < seconds:
    for p in range(partitions):
        value = b"p%d-%08d" % (p, n)
        while True:
            try:
                producer.produce(topic, value=value, partition=p, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
    n += 1
    producer.poll(0)
    time.sleep(0.004)
left = producer.flush(180)
stop.set()
reader.join()
if left or failed:
    sys.exit("%d undelivered, %d failed deliveries: %s" % (left, len(failed), failed[:5]))

# Read everything back, from whichever node leads each partition now.
final = {}
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "replication-checker-final",
    "enable.auto.commit": False,
    "topic.metadata.refresh.interval.ms": 1000,
})
ends = {}
deadline = time.time() + 60
for p in range(partitions):
    while True:
        try:
            ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
            break
        except Exception as e:  # a leader still being elected
            if time.time() > deadline:
                sys.exit("no watermarks for partition %d: %s" % (p, e))
            time.sleep(0.5)
consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
done = set(p for p in range(partitions) if ends[p] == 0)
while len(done) < partitions and time.time() < deadline + 60:
    msg = consumer.poll(0.5)
    if msg is None or msg.error() is not None:
        continue
    p, o = msg.partition(), msg.offset()
    final[(p, o)] = msg.value()
    if o + 1 >= ends[p]:
        done.add(p)
consumer.close()
if len(done) < partitions:
    sys.exit("read only %d of %d partitions to their end %s" % (len(done), partitions, ends))

positions = {}
for (p, o), v in final.items():
    if v in positions:
        sys.exit("value %r is in the log twice: %s and %s" % (v, positions[v], (p, o)))
    positions[v] = (p, o)
for v, (p, o) in acked.items():
    if final.get((p, o)) != v:
        sys.exit("acknowledged %r at %d/%d, the log holds %r there" % (v, p, o, final.get((p, o))))
for (p, o), v in seen.items():
    if final.get((p, o)) != v:
        sys.exit("the live consumer saw %r at %d/%d, the log now holds %r" % (v, p, o, final.get((p, o))))
for p in range(partitions):
    values = [v for (q, o), v in sorted(final.items()) if q == p]
    if values != sorted(values):
        sys.exit("partition %d holds values out of produce order" % p)
print("ok", len(acked), len(seen))
