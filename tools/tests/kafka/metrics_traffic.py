"""Traffic whose figures the metrics test checks: an idempotent producer writes RECORDS values
to every partition of TOPIC (partition p gets p+1 shares), a consumer in GROUP reads all of
them back exactly once and commits, on each partition, LAG records short of the end; a second
group, named with quotes and a newline, commits too (its name must not break the exposition).
Prints JSON: per partition the high watermark and the committed offset, and the records and
bytes produced and fetched as the clients counted them. The consumer stays in the group until
stdin closes, so the group has a live member while the test scrapes.
Usage: metrics_traffic.py BOOTSTRAP TOPIC PARTITIONS GROUP LAG"""
import json
import sys

from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic, partitions, group, lag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
RECORDS = 3000
producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
weights = [p + 1 for p in range(partitions)]
sent = 0
for i in range(RECORDS):
    # Partition p gets a share proportional to p+1, so each high watermark differs.
    slot = i % sum(weights)
    p = next(q for q in range(partitions) if slot < sum(weights[:q + 1]))
    producer.produce(topic, key=b"k%d" % i, value=b"value-%06d" % i, partition=p)
    sent += 1
assert producer.flush(30) == 0

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "session.timeout.ms": 30000})
consumer.subscribe([topic])
seen = 0
value_bytes = 0
while seen < RECORDS:
    m = consumer.poll(10)
    assert m is not None, f"only {seen} of {RECORDS} consumed"
    assert m.error() is None, m.error()
    seen += 1
high = {}
for p in range(partitions):
    low, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
    high[p] = hi
commits = [TopicPartition(topic, p, max(high[p] - lag, 0)) for p in range(partitions)]
consumer.commit(offsets=commits, asynchronous=False)
committed = {tp.partition: tp.offset for tp in consumer.committed(commits, timeout=10)}

evil = Consumer({"bootstrap.servers": bootstrap, "group.id": 'evil"} 1\nrill_fake_metric 2',
                 "enable.auto.commit": False})
evil.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
evil.close()

print(json.dumps({"high": high, "committed": committed, "produced": sent, "consumed": seen}), flush=True)
sys.stdin.read()
consumer.close()
