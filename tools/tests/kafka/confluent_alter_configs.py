"""confluent-kafka's admin changes a topic's configs (incremental and whole-set), bad values are
refused, broker configs cannot be changed, and a shorter retention.ms takes effect."""
import sys
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
        KafkaError.INVALID_REQUEST)
broker = ConfigResource("broker", "0", incremental_configs=[
    ConfigEntry("log.retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
refused(lambda: list(admin.incremental_alter_configs([broker]).values())[0].result(), KafkaError.INVALID_REQUEST)
assert describe()["retention.ms"].value == "1000", "refused changes change nothing"

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

# AlterConfigs replaces the whole set: segment.bytes returns to its default.
res = ConfigResource("topic", topic, set_config={"retention.bytes": "4194304"})
list(admin.alter_configs([res]).values())[0].result()
config = describe()
assert config["retention.bytes"].value == "4194304", config["retention.bytes"]
assert config["segment.bytes"].value != "2097152", config["segment.bytes"]

# Still serving: produce and read back after the reconfigurations.
producer.produce(topic, b"after")
assert producer.flush(30) == 0
low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
assert high == 5001, high
print("ok", low, high)
