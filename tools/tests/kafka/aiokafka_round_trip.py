"""aiokafka against Rill: an acks=all producer (lz4 and zstd batches among plain ones), then a
consumer with manual assignment and seeks (aiokafka's group consumer needs consumer groups,
a later issue). Exits non-zero on any mismatch. Usage: aiokafka_round_trip.py BOOTSTRAP TOPIC"""
import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
N = 3000


async def main():
    sent = []
    for codec in (None, "gzip", "lz4", "zstd"):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec,
                                    linger_ms=5, enable_idempotence=True)
        await producer.start()
        try:
            batch = []
            for i in range(N // 4):
                key, value = f"{codec}-{i}".encode(), f"aio {codec} {i}".encode()
                batch.append(await producer.send(topic, key=key, value=value, partition=0))
                sent.append((key, value))
            for fut in batch:
                await fut
        finally:
            await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        got = []
        while len(got) < N:
            records = await consumer.getmany(tp, timeout_ms=5000)
            assert records, f"stalled after {len(got)}"
            got.extend((m.offset, m.key, m.value) for m in records[tp])
        assert [(k, v) for (_, k, v) in got] == sent, "same messages, same order"
        assert [o for (o, _, _) in got] == list(range(N))
        consumer.seek(tp, N - 10)
        tail = (await consumer.getmany(tp, timeout_ms=5000))[tp]
        assert [m.offset for m in tail] == list(range(N - 10, N)), [m.offset for m in tail]
        end = await consumer.end_offsets([tp])
        assert end[tp] == N, end
    finally:
        await consumer.stop()
    print("ok")


asyncio.run(main())
