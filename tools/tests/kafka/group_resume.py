"""Consumes COUNT messages of a 2-partition topic in group GROUP, commits synchronously, and
prints the first offset it saw per partition and the committed positions.
Usage: group_resume.py BOOTSTRAP TOPIC GROUP COUNT"""
import json
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "enable.auto.commit": False})
c.subscribe([topic])
first, last, n = {}, {}, 0
deadline = time.time() + 30
while n < count and time.time() < deadline:
    m = c.poll(0.2)
    if m is None or m.error():
        continue
    first.setdefault(m.partition(), m.offset())
    last[m.partition()] = m.offset()
    n += 1
    c.commit(message=m, asynchronous=False)
c.close()
print(json.dumps({"first": first, "next": {p: o + 1 for p, o in last.items()}, "count": n}))
