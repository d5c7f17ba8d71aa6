"""ListOffsets with OffsetSpec.max_timestamp() (Kafka's -3): the record with the largest
timestamp, in an uncompressed and an lz4 batch, and nothing in an empty partition."""
import sys

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
for name in ["maxts", "maxts-lz4", "maxts-empty"]:
    admin.create_topics([NewTopic(name, 1)])[name].result()

for topic, compression in [("maxts", "none"), ("maxts-lz4", "lz4")]:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": compression})
    # One batch: offsets 0, 1, 2 with timestamps 1000, 5000, 3000; then a later batch below the max.
    # Values that compress, so librdkafka does compress the lz4 batch.
    for value, ts in [(b"a" * 2000, 1000), (b"b" * 2000, 5000), (b"c" * 2000, 3000)]:
        producer.produce(topic, value, timestamp=ts)
    assert producer.flush(30) == 0
    producer.produce(topic, b"d" * 2000, timestamp=2000)
    assert producer.flush(30) == 0


def max_timestamp(topic):
    futures = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.max_timestamp()})
    info = list(futures.values())[0].result()
    return info.offset, info.timestamp


assert max_timestamp("maxts") == (1, 5000), max_timestamp("maxts")
# Compressed batches are not searched: the batch's last offset, with its max timestamp.
assert max_timestamp("maxts-lz4") == (2, 5000), max_timestamp("maxts-lz4")
assert max_timestamp("maxts-empty")[0] == -1, max_timestamp("maxts-empty")
print("ok")
