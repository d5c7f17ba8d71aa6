"""Joins group GROUP on TOPIC with client id CLIENT, prints `assigned N` once it has partitions,
and stays in the group (heartbeating) until its stdin closes.
Usage: group_member.py BOOTSTRAP TOPIC GROUP CLIENT [SESSION_TIMEOUT_MS]"""
import sys
import threading

from confluent_kafka import Consumer

bootstrap, topic, group, client = sys.argv[1:5]
session_ms = int(sys.argv[5]) if len(sys.argv) > 5 else 45000
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": client,
              "enable.auto.commit": False, "auto.offset.reset": "latest",
              "session.timeout.ms": session_ms, "heartbeat.interval.ms": min(3000, session_ms // 3)})
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
c.subscribe([topic], on_assign=lambda cons, parts: print(f"assigned {len(parts)}", flush=True))
while not done.is_set():
    c.poll(0.1)
c.close()
