"""KIP-345 fencing: a second instance with the same group.instance.id replaces the first, whose
next group request gets FENCED_INSTANCE_ID, a fatal error for its client.
Usage: confluent_static_fencing.py BOOTSTRAP TOPIC. Prints `ok`; exits non-zero otherwise."""
import sys
import time
from confluent_kafka import Consumer, KafkaError

bootstrap, topic = sys.argv[1], sys.argv[2]

def member():
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": "static", "group.instance.id": "consumer2",
        "session.timeout.ms": 30000, "heartbeat.interval.ms": 300, "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })

def wait_assigned(consumer, what):
    deadline = time.time() + 30
    while not consumer.assignment():
        if time.time() > deadline:
            sys.exit(f"{what} got no assignment")
        msg = consumer.poll(0.2)
        if msg is not None and msg.error():
            sys.exit(f"{what}: {msg.error()}")

first = member()
first.subscribe([topic])
wait_assigned(first, "the first instance")
second = member()
second.subscribe([topic])
wait_assigned(second, "the second instance")
deadline = time.time() + 20
fenced = None
while fenced is None and time.time() < deadline:
    try:
        msg = first.poll(0.2)
    except Exception as e:  # some versions raise the fatal error
        fenced = e.args[0] if e.args else e
        break
    if msg is not None and msg.error():
        fenced = msg.error()
    second.poll(0)
if fenced is None:
    sys.exit("the first instance was not fenced within 20 s")
if not isinstance(fenced, KafkaError):
    sys.exit(f"unexpected error: {fenced!r}")
if fenced.code() == KafkaError._FATAL:
    # librdkafka reports the underlying error once the instance is fatally fenced.
    reason = fenced.str()
    if "fenced" not in reason.lower():
        sys.exit(f"fatal error is not a fencing: {reason}")
elif fenced.code() != KafkaError.FENCED_INSTANCE_ID:
    sys.exit(f"expected FENCED_INSTANCE_ID, got {fenced.code()}: {fenced.str()}")
# The second instance keeps the membership and its partitions.
for _ in range(10):
    second.poll(0.2)
if not second.assignment():
    sys.exit("the second instance lost its assignment")
second.close()
print("ok")
