"""kafka-python against Rill: one producer per compression codec (none, gzip, lz4, zstd), then a
consumer reading everything back with manual assignment. Exits non-zero on any mismatch.
Usage: kafka_python_compression.py BOOTSTRAP TOPIC"""
import sys
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
codecs = [None, "gzip", "lz4", "zstd"]
PER_CODEC = 2000
sent = []
for codec in codecs:
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, acks="all",
                             linger_ms=5, batch_size=64 * 1024)
    futures = []
    for i in range(PER_CODEC):
        key, value = f"{codec}-{i}".encode(), (f"{codec} value {i} " * 8).encode()
        futures.append(producer.send(topic, key=key, value=value, partition=i % 2))
        sent.append((key, value))
    for f in futures:
        f.get(timeout=30)
    producer.close()

consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         consumer_timeout_ms=10000)
parts = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
consumer.assign(parts)
consumer.seek_to_beginning(*parts)
got = []
for m in consumer:
    got.append((m.partition, m.offset, m.key, m.value))
    if len(got) == len(sent):
        break
consumer.close()
assert len(got) == len(sent), (len(got), len(sent))
assert sorted((k, v) for (_, _, k, v) in got) == sorted(sent)
for p in (0, 1):
    offsets = [o for (q, o, _, _) in got if q == p]
    assert offsets == list(range(len(offsets))), f"partition {p}: offsets dense and in order"
print("ok")
