// A kafkajs group consumer reads COUNT messages through its assignment and commits.
// Usage: node kafkajs_group.js BOOTSTRAP TOPIC GROUP COUNT
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs');
const LZ4 = require('kafkajs-lz4');
CompressionCodecs[CompressionTypes.LZ4] = new LZ4().codec;

const [bootstrap, topic, group, count] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'rill-test', brokers: [bootstrap], logLevel: logLevel.WARN });

async function main() {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const values = [];
  let assigned = [];
  consumer.on(consumer.events.GROUP_JOIN, (e) => { assigned = e.payload.memberAssignment[topic] || []; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${values.length} of ${count}`)), 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        values.push(message.value.toString());
        if (values.length === Number(count)) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log('ok', JSON.stringify(assigned.sort()));
}
main().catch((e) => { console.error(e); process.exit(1); });
