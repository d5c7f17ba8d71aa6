"""Log compaction end to end with confluent-kafka (librdkafka): keyed records, some lz4-compressed
batches, and tombstones go to a compacted topic with tiny segments and a low dirty ratio; a
keyless record is refused (INVALID_RECORD). Modes:
  produce BOOTSTRAP TOPIC ROUND   write ROUND's versions of keys k00-k19 (tombstones for k00-k04
                                  in round 0), then filler; print "acked KEY OFFSET VALUE" lines
  check BOOTSTRAP TOPIC           read everything; print "record OFFSET KEY VALUE" lines
Usage: compaction.py MODE ..."""
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

mode, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]

if mode == "produce":
    round_ = int(sys.argv[4])
    if round_ == 0:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1, config={
            "cleanup.policy": "compact", "segment.bytes": "4000", "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "1500", "min.compaction.lag.ms": "0"})])[topic].result()
        errors = []
        p = Producer({"bootstrap.servers": bootstrap, "retries": 0, "linger.ms": 0})
        p.produce(topic, b"no key", on_delivery=lambda err, msg: errors.append(err))
        p.flush(30)
        assert errors and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors
    acked = []

    def delivered(err, msg):
        assert err is None, err
        acked.append((msg.key().decode(), msg.offset(), None if msg.value() is None else msg.value().decode()))

    for codec, linger in [("none", 0), ("lz4", 20)]:
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger, "compression.type": codec,
                      "enable.idempotence": True})
        for version in range(5):
            for k in range(20):
                p.produce(topic, key=b"k%02d" % k, value=b"r%d-%s-v%d-k%02d" % (round_, codec.encode(), version, k),
                          on_delivery=delivered)
                if linger == 0:
                    p.flush(30)
        p.flush(30)
    if round_ == 0:
        for k in range(5):
            p.produce(topic, key=b"k%02d" % k, value=None, on_delivery=delivered)
        p.flush(30)
    # Filler with unique keys, so the writes above end up in sealed segments.
    for i in range(60):
        p.produce(topic, key=b"filler-%d-%03d" % (round_, i), value=b"x" * 100, on_delivery=delivered)
        p.flush(30)
    for key, offset, value in acked:
        print("acked", key, offset, "-" if value is None else value)

elif mode == "check":
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "checker", "enable.auto.commit": False})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.assign([TopicPartition(topic, 0, low)])
    seen = 0
    deadline = time.time() + 60
    position = low
    while position < high and time.time() < deadline:
        m = c.poll(1)
        if m is None:
            # An empty batch at the end of what is left still moves the position.
            position = max(position, c.position([TopicPartition(topic, 0)])[0].offset)
            continue
        assert m.error() is None, m.error()
        value = "-" if m.value() is None else m.value().decode()
        print("record", m.offset(), m.key().decode(), value)
        position = m.offset() + 1
        seen += 1
    assert position >= high, (position, high)
    c.close()
