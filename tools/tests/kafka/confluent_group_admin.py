"""Group administration against Rill: confluent-kafka's AdminClient lists and describes groups,
lists and alters offsets and deletes groups; kafka-python's admin deletes one partition's
offsets (OffsetDelete, which confluent-kafka's Python API lacks).
Usage: confluent_group_admin.py BOOTSTRAP TOPIC GROUP"""
import sys

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import KafkaAdminClient

bootstrap, topic, group = sys.argv[1:4]
admin = AdminClient({"bootstrap.servers": bootstrap})
listed = admin.list_consumer_groups().result()
assert group in [g.group_id for g in listed.valid], listed.valid
described = admin.describe_consumer_groups([group])[group].result()
assert described.group_id == group and described.members == [], described
offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
committed = {tp.partition: tp.offset for tp in offsets.topic_partitions}
assert committed, offsets
altered = [TopicPartition(topic, p, 1) for p in committed]
admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, altered)])[group].result()
offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
assert all(tp.offset == 1 for tp in offsets.topic_partitions), offsets.topic_partitions
first = min(committed)
kafka_python_admin = KafkaAdminClient(bootstrap_servers=bootstrap)
kafka_python_admin.delete_group_offsets(group, [KafkaTopicPartition(topic, first)])
kafka_python_admin.close()
offsets = admin.list_consumer_group_offsets(
    [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, first)])])[group].result()
assert offsets.topic_partitions[0].offset < 0, offsets.topic_partitions
admin.delete_consumer_groups([group])[group].result()
try:
    admin.delete_consumer_groups([group])[group].result()
    raise SystemExit("deleting a deleted group must fail")
except KafkaException as e:
    assert "GROUP_ID_NOT_FOUND" in str(e), e
print("ok")
