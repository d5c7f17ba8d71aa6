// The Java Kafka client (kafka-clients, from Maven Central) against Rill, unchanged: an admin
// client bootstrapped from one node, an idempotent producer from another and a group consumer
// from a third (the same node three times against a single broker). Exits non-zero on any
// mismatch. Run with Java's source launcher:
//   java -cp "$(cat classpath.txt)" KafkaClients.java ADMIN PRODUCER CONSUMER TOPIC BROKERS
import java.time.Duration;
import java.util.*;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class KafkaClients {
    static final int PARTITIONS = 6;
    static final int RECORDS = 600;

    static void check(boolean ok, String what) {
        if (!ok) throw new IllegalStateException(what);
    }

    public static void main(String[] args) throws Exception {
        String adminNode = args[0], producerNode = args[1], consumerNode = args[2], topic = args[3];
        int brokers = Integer.parseInt(args[4]);
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, adminNode);
        adminProps.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60000);
        try (Admin admin = Admin.create(adminProps)) {
            DescribeClusterResult cluster = admin.describeCluster();
            Collection<Node> nodes = cluster.nodes().get(30, TimeUnit.SECONDS);
            check(nodes.size() == brokers, "describeCluster lists " + nodes);
            Node controller = cluster.controller().get(30, TimeUnit.SECONDS);
            check(controller != null && nodes.stream().anyMatch(n -> n.id() == controller.id()),
                "controller " + controller + " is not among " + nodes);

            // The admin client sends a broker's configs request to that broker: each names itself.
            for (Node n : nodes) {
                ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(n.id()));
                Config configs = admin.describeConfigs(List.of(broker)).all().get(30, TimeUnit.SECONDS).get(broker);
                check(String.valueOf(n.id()).equals(configs.get("broker.id").value()),
                    "broker " + n.id() + " describes broker.id " + configs.get("broker.id"));
            }

            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(30, TimeUnit.SECONDS);
            TopicDescription described =
                admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
            check(described.partitions().size() == PARTITIONS, "partitions " + described.partitions());
            Set<Integer> leaders = new TreeSet<>();
            for (TopicPartitionInfo p : described.partitions()) {
                check(p.leader() != null, "partition " + p.partition() + " has no leader");
                check(p.replicas().size() == 1 && p.isr().contains(p.leader()), "replicas of " + p);
                leaders.add(p.leader().id());
            }
            check(leaders.size() == Math.min(brokers, PARTITIONS), "leaders " + leaders + " over " + brokers + " brokers");

            Properties producerProps = new Properties();
            producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, producerNode);
            producerProps.put(ProducerConfig.ACKS_CONFIG, "all");
            producerProps.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
            producerProps.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4");
            producerProps.put(ProducerConfig.LINGER_MS_CONFIG, 5);
            producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
            producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps)) {
                for (int i = 0; i < RECORDS; i++) {
                    sent.add(producer.send(new ProducerRecord<>(topic, i % PARTITIONS, "k" + i, "value " + i)));
                }
                producer.flush();
            }
            long[] next = new long[PARTITIONS];
            for (int i = 0; i < RECORDS; i++) {
                RecordMetadata m = sent.get(i).get(30, TimeUnit.SECONDS);
                check(m.partition() == i % PARTITIONS, "record " + i + " went to partition " + m.partition());
                check(m.offset() == next[m.partition()], "record " + i + " got offset " + m.offset());
                next[m.partition()]++;
            }

            String group = topic + "-readers";
            Properties consumerProps = new Properties();
            consumerProps.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, consumerNode);
            consumerProps.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            consumerProps.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            consumerProps.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            consumerProps.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            consumerProps.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            Map<Integer, Long> seen = new HashMap<>();
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps)) {
                consumer.subscribe(List.of(topic));
                long deadline = System.currentTimeMillis() + 60000;
                while (seen.size() < RECORDS && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        int i = Integer.parseInt(r.key().substring(1));
                        check(r.value().equals("value " + i), "record " + r);
                        check(r.partition() == i % PARTITIONS, "record " + i + " read from partition " + r.partition());
                        Long before = seen.put(i, r.offset());
                        check(before == null, "record " + i + " read twice");
                    }
                }
                check(seen.size() == RECORDS, "read " + seen.size() + " of " + RECORDS);
                consumer.commitSync(Duration.ofSeconds(30));
            }
            Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            long committedTotal = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
            check(committed.size() == PARTITIONS && committedTotal == RECORDS, "committed " + committed);
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (int p = 0; p < PARTITIONS; p++) latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
            long end = admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS).values().stream()
                .mapToLong(ListOffsetsResult.ListOffsetsResultInfo::offset).sum();
            check(end == RECORDS, "end offsets sum to " + end);

            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            admin.incrementalAlterConfigs(Map.of(resource, List.of(new AlterConfigOp(
                new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET)))).all().get(30, TimeUnit.SECONDS);
            Config config = admin.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
            check("3600000".equals(config.get("retention.ms").value()), "retention.ms " + config.get("retention.ms"));

            admin.deleteTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
            check(!admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic), "topic still listed");
        }
        System.out.println("ok " + RECORDS);
    }
}
