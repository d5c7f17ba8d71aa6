"""Kafka's topic-config catalogue through confluent-kafka (librdkafka): every Kafka topic config
name is accepted with Kafka's validation and described with its source and synonyms; the configs
described for one topic create another (describe-then-create); what Rill enforces takes effect:
max.message.bytes (MSG_SIZE_TOO_LARGE), message.timestamp.type=LogAppendTime (the broker's
timestamps, in delivery reports and in fetched records), min.insync.replicas above the in-sync
replicas (NOT_ENOUGH_REPLICAS for acks=all, not for acks=1), segment.bytes=10000 (small
segments; the test counts the files). Usage: topic_configs.py BOOTSTRAP"""
import sys
import time

from confluent_kafka import (TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaError, KafkaException,
                             Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
DYNAMIC_TOPIC, STATIC_BROKER, DEFAULT = 1, 4, 5


def create(name, config, partitions=1):
    admin.create_topics([NewTopic(name, partitions, 1, config=config)])[name].result()


def refused(name, config, needle):
    try:
        create(name, config)
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_CONFIG, e
        assert needle in e.args[0].str(), e
        return
    raise SystemExit(f"{config} accepted")


def describe(name):
    return list(admin.describe_configs([ConfigResource("topic", name)]).values())[0].result()


def source(entry):
    return int(getattr(entry.source, "value", entry.source))


set_configs = {
    "segment.bytes": "10000", "max.message.bytes": "2000", "message.timestamp.type": "LogAppendTime",
    "retention.ms": "86400000", "preallocate": "true", "compression.type": "producer",
    "delete.retention.ms": "1000", "min.cleanable.dirty.ratio": "0.3", "segment.jitter.ms": "10",
    "leader.replication.throttled.replicas": "*", "cleanup.policy": "delete", "flush.messages": "1000",
}
create("source", set_configs)
refused("bad", {"no.such.config": "1"}, "Unknown topic config name: no.such.config")
refused("bad", {"segment.bytes": "13"}, "Value must be at least 14")
refused("bad", {"retention.ms": "soon"}, "Not a number of type LONG")
refused("bad", {"message.timestamp.type": "Whenever"}, "String must be one of")
refused("bad", {"min.cleanable.dirty.ratio": "2"}, "no more than 1")
# A compacted topic without delete: keyless records are refused (compaction.py) and so is
# DeleteRecords (POLICY_VIOLATION), as in Kafka; compact,delete allows it.
create("compact-only", {"cleanup.policy": "compact"})
create("compact-delete", {"cleanup.policy": "compact,delete"})
kp = Producer({"bootstrap.servers": bootstrap})
for t in ["compact-only", "compact-delete"]:
    kp.produce(t, key=b"k", value=b"v")
kp.flush(30)
only = admin.delete_records([TopicPartition("compact-only", 0, 1)])
err = list(only.values())[0].exception()
assert err is not None and err.args[0].code() == KafkaError.POLICY_VIOLATION, err
both = admin.delete_records([TopicPartition("compact-delete", 0, 1)])
assert list(both.values())[0].result().low_watermark == 1
assert "bad" not in admin.list_topics(timeout=10).topics

described = describe("source")
for name in ["segment.ms", "flush.ms", "unclean.leader.election.enable", "max.compaction.lag.ms",
             "message.timestamp.after.max.ms", "follower.replication.throttled.replicas",
             "compression.zstd.level", "local.retention.ms", "remote.storage.enable", "rill.durability"]:
    assert name in described, f"{name} not described: {sorted(described)}"
assert len(described) >= 38, len(described)
for name, value in set_configs.items():
    entry = described[name]
    assert entry.value == value and source(entry) == DYNAMIC_TOPIC, (name, entry, entry.source)
retention = described["retention.ms"]
synonyms = {s.name: s for s in retention.synonyms.values()}
assert "log.retention.ms" in synonyms, retention.synonyms
assert source(described["segment.ms"]) == STATIC_BROKER, described["segment.ms"].source
assert source(described["unclean.leader.election.enable"]) == DEFAULT
assert described["unclean.leader.election.enable"].value == "false"

# Describe-then-create: every described value (defaults included) creates a copy with the same
# configs.
copied = {name: e.value for name, e in described.items() if not e.is_read_only and e.value is not None}
create("copy", copied)
again = describe("copy")
assert {n: e.value for n, e in again.items()} == {n: e.value for n, e in described.items()}

# max.message.bytes: a batch above it is refused with MESSAGE_TOO_LARGE.
errors = []
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "retries": 0})
p.produce("source", b"x" * 3000, on_delivery=lambda err, msg: errors.append(err))
p.flush(30)
assert len(errors) == 1 and errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors

# LogAppendTime: delivery reports and fetched records carry the broker's time.
before = int(time.time() * 1000)
stamps = []
def delivered(err, msg):
    assert err is None, err
    stamps.append(msg.timestamp())
for i in range(40):
    p.produce("source", (b"%03d" % i) * 100, timestamp=1000, on_delivery=delivered)
    p.poll(0)
    p.flush(30)
after = int(time.time() * 1000)
assert len(stamps) == 40, stamps
assert all(kind == TIMESTAMP_LOG_APPEND_TIME and before - 5 <= ts <= after + 5 for kind, ts in stamps), stamps[:3]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "configs", "auto.offset.reset": "earliest"})
c.assign([TopicPartition("source", 0, 0)])
got = []
deadline = time.time() + 30
while len(got) < 40 and time.time() < deadline:
    m = c.poll(1)
    if m is not None and m.error() is None:
        got.append(m.timestamp())
c.close()
assert len(got) == 40 and all(kind == TIMESTAMP_LOG_APPEND_TIME and before - 5 <= ts <= after + 5 for kind, ts in got), got[:3]

# min.insync.replicas=2 with one in-sync replica: acks=all refused, acks=1 accepted.
create("guarded", {"min.insync.replicas": "2"})
for acks, expected in [("all", KafkaError.NOT_ENOUGH_REPLICAS), ("1", None)]:
    results = []
    guarded = Producer({"bootstrap.servers": bootstrap, "acks": acks, "retries": 0, "linger.ms": 0})
    guarded.produce("guarded", b"v", on_delivery=lambda err, msg: results.append(err))
    guarded.flush(30)
    got_code = results[0].code() if results and results[0] is not None else None
    assert results and got_code == expected, (acks, results)
print("ok")
