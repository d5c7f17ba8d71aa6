"""A kafka-python consumer in group GROUP reads COUNT messages through its assignment.
Usage: kafka_python_group.py BOOTSTRAP TOPIC GROUP COUNT"""
import sys
from kafka import KafkaConsumer

bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                         consumer_timeout_ms=20000, enable_auto_commit=False)
got = []
for m in consumer:
    got.append(m.value)
    if len(got) == count:
        break
assigned = sorted(p.partition for p in consumer.assignment())
consumer.commit()
consumer.close()
assert len(got) == count, len(got)
print("ok", assigned)
