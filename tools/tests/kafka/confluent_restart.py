"""An idempotent confluent-kafka producer (acks=all) that keeps producing while the test kills and
restarts the broker. Prints `progress N` as acknowledgements arrive, then `acked N` when all of
its messages are acknowledged. Usage: confluent_restart.py BOOTSTRAP TOPIC COUNT"""
import sys
from confluent_kafka import KafkaException, Producer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = Producer({
    "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
    "linger.ms": 2, "batch.num.messages": 500, "message.timeout.ms": 120000,
    "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
})
acked = 0
errors = []
def delivered(err, msg):
    global acked
    if err:
        errors.append(err)
        return
    acked += 1
    if acked % 5000 == 0:
        print(f"progress {acked}", flush=True)
for i in range(count):
    while True:
        try:
            producer.produce(topic, value=str(i).encode(), partition=i % 2, on_delivery=delivered)
            break
        except BufferError:
            producer.poll(0.01)
    producer.poll(0)
    if i % 1000 == 999:
        producer.poll(0.005)  # pace the producer so the restart lands mid-stream
remaining = producer.flush(120)
if errors or remaining:
    raise SystemExit(f"errors {errors[:3]}, {remaining} unacknowledged")
print(f"acked {acked}", flush=True)
