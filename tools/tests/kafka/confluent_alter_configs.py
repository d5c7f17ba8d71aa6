"""confluent-kafka's admin changes a topic's configs (incremental and whole-set), bad values are
refused with Kafka's error codes, broker configs cannot be changed, validate_only changes
nothing, retention.ms=-1 means no limit, concurrent changes both land, a shorter retention.ms
takes effect, and an idempotent producer keeps going through the reconfigurations."""
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
topic = "altered"
admin.create_topics([NewTopic(topic, 1, config={"segment.bytes": "2097152"})])[topic].result()


def describe():
    return list(admin.describe_configs([ConfigResource("topic", topic)]).values())[0].result()


def incremental(*entries):
    res = ConfigResource("topic", topic, incremental_configs=list(entries))
    return list(admin.incremental_alter_configs([res]).values())[0].result()


def refused(call, code):
    try:
        call()
    except KafkaException as e:
        assert e.args[0].code() == code, e
        return
    raise SystemExit("accepted")


default_retention = describe()["retention.ms"].value
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
for i in range(5000):
    producer.produce(topic, b"x" * 1000)
assert producer.flush(30) == 0

incremental(ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET))
config = describe()
assert config["retention.ms"].value == "1000", config["retention.ms"]
assert config["segment.bytes"].value == "2097152", "other configs keep their values"

refused(lambda: incremental(ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)),
        KafkaError.INVALID_CONFIG)
refused(lambda: incremental(ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)),
        KafkaError.INVALID_CONFIG)
res = ConfigResource("topic", topic, incremental_configs=[
    ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.SET)])
list(admin.incremental_alter_configs([res], validate_only=True).values())[0].result()
missing = ConfigResource("topic", "no-such-topic", incremental_configs=[
    ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.SET)])
refused(lambda: list(admin.incremental_alter_configs([missing]).values())[0].result(),
        KafkaError.UNKNOWN_TOPIC_OR_PART)
broker = ConfigResource("broker", "0", incremental_configs=[
    ConfigEntry("log.retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
refused(lambda: list(admin.incremental_alter_configs([broker]).values())[0].result(), KafkaError.INVALID_REQUEST)
assert describe()["retention.ms"].value == "1000", "refused and validate-only changes change nothing"

# The shorter retention deletes the sealed segments (the log start moves).
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
deadline = time.time() + 60
while True:
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    if low > 0:
        break
    assert time.time() < deadline, (low, high)
    time.sleep(0.2)
assert high == 5000, high

incremental(ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE))
assert describe()["retention.ms"].value == default_retention

# -1: no limit, shown as -1 and set on the topic (not the 7-day default).
incremental(ConfigEntry("retention.ms", "-1", incremental_operation=AlterConfigOpType.SET))
config = describe()
assert config["retention.ms"].value == "-1" and not config["retention.ms"].is_default, config["retention.ms"]

# Two changes at once, of different configs: both land.
first = admin.incremental_alter_configs([ConfigResource("topic", topic, incremental_configs=[
    ConfigEntry("retention.bytes", "8388608", incremental_operation=AlterConfigOpType.SET)])])
second = admin.incremental_alter_configs([ConfigResource("topic", topic, incremental_configs=[
    ConfigEntry("rill.durability", "interval:20", incremental_operation=AlterConfigOpType.SET)])])
for f in list(first.values()) + list(second.values()):
    f.result()
config = describe()
assert config["retention.bytes"].value == "8388608" and config["rill.durability"].value == "interval:20", config

# An idempotent producer keeps going while the topic is reconfigured under it.
steady = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 2})
failures = []
def deliver(err, msg):
    if err:
        failures.append(err)
def produce_steadily():
    for i in range(20000):
        while True:
            try:
                steady.produce(topic, b"y" * 100, on_delivery=deliver)
                break
            except BufferError:
                steady.poll(0.01)
        steady.poll(0)
    assert steady.flush(60) == 0
before = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
writer = threading.Thread(target=produce_steadily)
writer.start()
for durability in ["always", "interval:10", "always"]:
    incremental(ConfigEntry("rill.durability", durability, incremental_operation=AlterConfigOpType.SET))
    time.sleep(0.05)
writer.join()
assert not failures, failures[:3]
after = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
assert after - before == 20000, (before, after)

# AlterConfigs replaces the whole set: segment.bytes returns to its default.
res = ConfigResource("topic", topic, set_config={"retention.bytes": "4194304"})
list(admin.alter_configs([res]).values())[0].result()
config = describe()
assert config["retention.bytes"].value == "4194304", config["retention.bytes"]
# Not set on the topic: the broker's value, from the profile (Kafka's STATIC_BROKER_CONFIG, as a
# value from server.properties is).
source = config["segment.bytes"].source
assert config["segment.bytes"].value == "268435456" and int(getattr(source, "value", source)) == 4, \
    (config["segment.bytes"], source)
assert config["retention.ms"].value == default_retention, "AlterConfigs replaced the whole set"

# Still serving: produce and read back after the reconfigurations.
producer.produce(topic, b"after")
assert producer.flush(30) == 0
low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
assert high == after + 1, (high, after)
print("ok", low, high)
