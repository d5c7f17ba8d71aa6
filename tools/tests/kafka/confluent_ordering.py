"""Per-connection order, as Kafka clients rely on it. Usage: confluent_ordering.py BOOTSTRAP TOPIC

1. A plain librdkafka producer (not idempotent, its default of many requests in flight, no
   retries) sends 1,000 messages of 10 KB and then 400 of 500 KB to one partition; reading
   the partition back must give them in send order.
2. A consumer in a group commits asynchronously after each of the first 51 messages; once every
   commit is answered, its committed offset must be the last one (51), never an earlier one.
Prints `ok` on success; exits non-zero with the reason otherwise."""
import sys
from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
producer = Producer({
    "bootstrap.servers": bootstrap, "enable.idempotence": False, "acks": 1, "retries": 0,
    "linger.ms": 1, "message.max.bytes": 1_000_000, "batch.size": 1_000_000,
})
failed = []
def delivered(err, msg):
    if err:
        failed.append(str(err))
sizes = [10_000] * 1000 + [500_000] * 400
for i, size in enumerate(sizes):
    head = f"{i:06d}".encode()
    while True:
        try:
            producer.produce(topic, value=head + b"x" * (size - len(head)), partition=0, on_delivery=delivered)
            break
        except BufferError:
            producer.poll(0.005)
    producer.poll(0)
producer.flush(120)
if failed:
    sys.exit(f"{len(failed)} deliveries failed, first: {failed[0]}")

answered = []
def committed(err, partitions):
    answered.append(err)
consumer = Consumer({
    "bootstrap.servers": bootstrap, "group.id": "ordering", "enable.auto.commit": False,
    "auto.offset.reset": "earliest", "fetch.max.bytes": 50_000_000, "on_commit": committed,
})
consumer.subscribe([topic])
seen = []
while len(seen) < len(sizes):
    msg = consumer.poll(10)
    if msg is None:
        sys.exit(f"no message after {len(seen)}")
    if msg.error():
        sys.exit(f"consumer error: {msg.error()}")
    seen.append(int(msg.value()[:6]))
    if msg.offset() <= 50:
        consumer.commit(message=msg, asynchronous=True)
out_of_order = [(at, v) for at, v in enumerate(seen) if v != at]
if out_of_order:
    sys.exit(f"{len(out_of_order)} of {len(seen)} messages out of order, first (offset, message): {out_of_order[:5]}")
while len(answered) < 51:
    consumer.poll(0.1)
if any(answered):
    sys.exit(f"commit errors: {[e for e in answered if e]}")
offset = consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
if offset != 51:
    sys.exit(f"committed offset read back as {offset}, expected 51 (a later commit was overtaken)")
consumer.close()
print("ok")
