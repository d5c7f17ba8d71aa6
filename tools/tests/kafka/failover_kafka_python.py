"""kafka-python through a partition leader's failover (tools/tests/replication.rs): an
idempotent producer (acks=all) sends numbered values to every partition of TOPIC for SECONDS
while the test kills the leader; prints "acked VALUE PARTITION OFFSET" per acknowledged value
and "done". Usage: failover_kafka_python.py BOOTSTRAP TOPIC PARTITIONS SECONDS"""
import sys
import time

from kafka import KafkaProducer

bootstrap, topic, partitions, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", enable_idempotence=True,
                         retries=1000, retry_backoff_ms=100, request_timeout_ms=10000,
                         metadata_max_age_ms=1000, max_in_flight_requests_per_connection=1)
end = time.time() + seconds
n = 0
while time.time() < end:
    futures = []
    for p in range(partitions):
        value = "py-p%d-%08d" % (p, n)
        futures.append((value, producer.send(topic, value=value.encode(), partition=p)))
    n += 1
    for value, future in futures:
        md = future.get(timeout=120)
        print("acked", value, md.partition, md.offset, flush=True)
    time.sleep(0.02)
producer.flush(60)
print("done", flush=True)
