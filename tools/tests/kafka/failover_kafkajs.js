// kafkajs through a partition leader's failover (tools/tests/replication.rs): an idempotent
// producer (acks=all) sends numbered values to every partition of TOPIC for SECONDS while the
// test kills the leader; prints one line per acknowledged value ("acked VALUE PARTITION OFFSET")
// and "done" at the end. Usage: node failover_kafkajs.js BOOTSTRAP TOPIC PARTITIONS SECONDS
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, partitions, seconds] = process.argv.slice(2);
const kafka = new Kafka({
  clientId: 'rill-failover', brokers: bootstrap.split(','), logLevel: logLevel.NOTHING,
  retry: { initialRetryTime: 100, retries: 30 },
});

async function main() {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const end = Date.now() + Number(seconds) * 1000;
  let n = 0;
  while (Date.now() < end) {
    // One send per partition: its answer names the offset of that one value.
    for (let p = 0; p < Number(partitions); p++) {
      const value = `js-p${p}-${String(n).padStart(8, '0')}`;
      const [r] = await producer.send({ topic, messages: [{ value, partition: p }], acks: -1, timeout: 30000 });
      console.log(`acked ${value} ${r.partition} ${Number(r.baseOffset)}`);
    }
    n++;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await producer.disconnect();
  console.log('done');
}
main().catch((e) => { console.error(e); process.exit(1); });
