"""confluent-kafka (librdkafka) against Rill: AdminClient create/describe/delete, an idempotent
acks=all producer of 100k messages, a consumer with manual assign, seek by offset and by
timestamp. Exits non-zero on any mismatch. Usage: confluent_basics.py BOOTSTRAP"""
import sys
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic("ck", num_partitions=4, replication_factor=1,
                                       config={"retention.ms": "86400000"})]).values():
    f.result()
try:
    for f in admin.create_topics([NewTopic("ck", num_partitions=1, replication_factor=1)]).values():
        f.result()
    raise SystemExit("creating an existing topic must fail")
except KafkaException as e:
    assert e.args[0].name() == "TOPIC_ALREADY_EXISTS", e
cluster = admin.describe_cluster().result()
assert [n.id for n in cluster.nodes] == [0] and cluster.controller.id == 0, cluster
meta = admin.list_topics(timeout=10)
assert len(meta.topics["ck"].partitions) == 4, meta.topics
config = list(admin.describe_configs([ConfigResource("topic", "ck")]).values())[0].result()
assert config["retention.ms"].value == "86400000", config["retention.ms"]
assert config["cleanup.policy"].value == "delete"

N = 100_000
producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                     "linger.ms": 5})
acked = []
def delivered(err, msg):
    if err:
        raise KafkaException(err)
    acked.append((msg.partition(), msg.offset()))
for i in range(N):
    while True:
        try:
            producer.produce("ck", key=str(i).encode(), value=f"v{i}".encode(), partition=i % 4,
                             timestamp=1_700_000_000_000 + i, on_delivery=delivered)
            break
        except BufferError:
            producer.poll(0.01)
    producer.poll(0)
assert producer.flush(30) == 0
assert len(acked) == N, len(acked)
assert len(set(acked)) == N, "every message has its own offset"
for p in range(4):
    offsets = sorted(o for (q, o) in acked if q == p)
    assert offsets == list(range(N // 4)), f"partition {p} offsets are dense from 0"

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
# Seek by offset: partition 2 from offset 100 holds messages 402, 406, ...
consumer.assign([TopicPartition("ck", 2, 100)])
got = []
while len(got) < N // 4 - 100:
    m = consumer.poll(10)
    assert m is not None, f"stalled after {len(got)}"
    if m.error():
        raise KafkaException(m.error())
    got.append(m)
assert [m.offset() for m in got] == list(range(100, N // 4))
assert [int(m.key()) for m in got] == list(range(402, N, 4))
assert all(m.value() == f"v{int(m.key())}".encode() for m in got)
assert got[0].timestamp()[1] == 1_700_000_000_000 + 402
# Seek by timestamp: the first message of partition 1 at or after t0 + 4001 is message 4001.
found = consumer.offsets_for_times([TopicPartition("ck", 1, 1_700_000_000_000 + 4001)], timeout=10)
assert found[0].offset == 1000, found
found = consumer.offsets_for_times([TopicPartition("ck", 1, 1_800_000_000_000)], timeout=10)
assert found[0].offset == -1, found
low, high = consumer.get_watermark_offsets(TopicPartition("ck", 3), timeout=10)
assert (low, high) == (0, N // 4), (low, high)
consumer.close()

for f in admin.create_partitions([NewPartitions("ck", 6)]).values():
    f.result()
assert len(admin.list_topics(timeout=10).topics["ck"].partitions) == 6
for f in admin.delete_topics(["ck"]).values():
    f.result()
assert "ck" not in admin.list_topics(timeout=10).topics
print("ok")
