"""Transactional producers against Rill, which has no transactions yet: confluent-kafka
(librdkafka) and kafka-python fail init_transactions() at once with a fatal error that says
transactions are not supported, instead of retrying COORDINATOR_NOT_AVAILABLE for a minute;
a plain idempotent producer on the same broker still works. Prints the seconds each took.
Usage: transactions_refused.py BOOTSTRAP TOPIC"""
import sys
import time

from confluent_kafka import KafkaException, Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
MESSAGE = "does not support transactions"

started = time.monotonic()
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "tx-1"})
try:
    producer.init_transactions(50)
    raise SystemExit("librdkafka: init_transactions succeeded")
except KafkaException as e:
    error = e.args[0]
    assert error.fatal(), f"librdkafka: not fatal: {error}"
    assert MESSAGE in error.str(), f"librdkafka: {error.str()}"
librdkafka = time.monotonic() - started

import kafka.errors
from kafka import KafkaProducer

started = time.monotonic()
try:
    kp = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="tx-2")
    kp.init_transactions()
    raise SystemExit("kafka-python: init_transactions succeeded")
except kafka.errors.KafkaError as e:
    assert not getattr(e, "retriable", False), f"kafka-python: retriable {e!r}"
kafka_python = time.monotonic() - started

plain = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
delivered = []
plain.produce(topic, b"after", on_delivery=lambda err, msg: delivered.append(err))
plain.flush(30)
assert delivered == [None], delivered
print(f"ok {librdkafka:.1f} {kafka_python:.1f}")
