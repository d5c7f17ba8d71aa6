// The Java AdminClient's topic and log APIs against one Rill broker: createTopics with
// validateOnly (checked, nothing created), deleteRecords (the low watermark it answers,
// listOffsets earliest following it, a consumer below it reset by auto.offset.reset),
// describeLogDirs (the data directory, its file system, every partition's size),
// describeProducers and listGroups. Exits non-zero on any mismatch. Run with Java's source launcher:
//   java -cp "$(cat classpath.txt)" AdminApis.java BOOTSTRAP TOPIC
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionReplica;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class AdminApis {
    static void check(boolean ok, String what) {
        if (!ok) throw new IllegalStateException(what);
    }

    static <T> Throwable failure(org.apache.kafka.common.KafkaFuture<T> f) throws Exception {
        try {
            f.get(30, TimeUnit.SECONDS);
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(props)) {
            CreateTopicsOptions validate = new CreateTopicsOptions().validateOnly(true);
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1)), validate).all().get(30, TimeUnit.SECONDS);
            check(!admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic), "validateOnly created the topic");
            Throwable bad = failure(admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1)
                .configs(Map.of("retention.ms", "soon"))), validate).all());
            check(bad instanceof InvalidConfigurationException, "validateOnly with a bad config: " + bad);
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
            Throwable exists = failure(admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1)), validate).all());
            check(exists instanceof TopicExistsException, "validateOnly of an existing topic: " + exists);

            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
            pp.put(ProducerConfig.LINGER_MS_CONFIG, 0);
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                for (int i = 0; i < 100; i++) producer.send(new ProducerRecord<>(topic, 0, "k" + i, "v" + i)).get();
            }
            TopicPartition p0 = new TopicPartition(topic, 0), p1 = new TopicPartition(topic, 1);
            Map<TopicPartition, DeletedRecords> deleted = admin.deleteRecords(Map.of(
                p0, RecordsToDelete.beforeOffset(40), p1, RecordsToDelete.beforeOffset(0))).lowWatermarks()
                .entrySet().stream().collect(HashMap::new, (m, e) -> {
                    try {
                        m.put(e.getKey(), e.getValue().get(30, TimeUnit.SECONDS));
                    } catch (Exception x) {
                        throw new IllegalStateException(x);
                    }
                }, HashMap::putAll);
            check(deleted.get(p0).lowWatermark() == 40, "low watermark " + deleted.get(p0).lowWatermark());
            check(deleted.get(p1).lowWatermark() == 0, "empty partition's low watermark " + deleted.get(p1).lowWatermark());
            Throwable beyond = failure(admin.deleteRecords(Map.of(p0, RecordsToDelete.beforeOffset(101))).all());
            check(beyond instanceof OffsetOutOfRangeException, "deleting beyond the high watermark: " + beyond);
            long earliest = admin.listOffsets(Map.of(p0, OffsetSpec.earliest())).partitionResult(p0)
                .get(30, TimeUnit.SECONDS).offset();
            check(earliest == 40, "earliest after deleteRecords " + earliest);

            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            cp.put(ConsumerConfig.GROUP_ID_CONFIG, topic + "-group");
            cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
            cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                consumer.assign(List.of(p0));
                consumer.seek(p0, 10);
                Throwable reset = null;
                try {
                    for (int i = 0; i < 20 && reset == null; i++) consumer.poll(Duration.ofMillis(500));
                } catch (org.apache.kafka.clients.consumer.OffsetOutOfRangeException e) {
                    reset = e;
                }
                check(reset != null, "a fetch below the log start must be out of range");
            }
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                consumer.assign(List.of(p0));
                consumer.seek(p0, 10);
                List<ConsumerRecord<String, String>> got = new ArrayList<>();
                long deadline = System.currentTimeMillis() + 30000;
                while (got.size() < 60 && System.currentTimeMillis() < deadline) {
                    consumer.poll(Duration.ofMillis(500)).forEach(got::add);
                }
                check(got.size() == 60 && got.get(0).offset() == 40 && got.get(0).value().equals("v40"),
                    "read after the reset: " + got.size() + " records from " + (got.isEmpty() ? -1 : got.get(0).offset()));
                consumer.commitSync(Duration.ofSeconds(30));
            }

            int broker = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS).iterator().next().id();
            Map<String, LogDirDescription> dirs =
                admin.describeLogDirs(List.of(broker)).allDescriptions().get(30, TimeUnit.SECONDS).get(broker);
            check(dirs.size() == 1, "log dirs " + dirs.keySet());
            LogDirDescription dir = dirs.values().iterator().next();
            check(dir.error() == null, "log dir error " + dir.error());
            check(dir.totalBytes().orElse(0) > 0 && dir.usableBytes().orElse(-1) >= 0
                && dir.usableBytes().getAsLong() <= dir.totalBytes().getAsLong(),
                "total " + dir.totalBytes() + " usable " + dir.usableBytes());
            ReplicaInfo r0 = dir.replicaInfos().get(p0), r1 = dir.replicaInfos().get(p1);
            check(r0 != null && r0.size() > 0 && !r0.isFuture(), "partition 0 in the log dir: " + r0);
            check(r1 != null && r1.size() == 0, "partition 1 in the log dir: " + r1);
            Map<TopicPartitionReplica, DescribeReplicaLogDirsResult.ReplicaLogDirInfo> replicas = admin
                .describeReplicaLogDirs(List.of(new TopicPartitionReplica(topic, 0, broker))).all().get(30, TimeUnit.SECONDS);
            check(dirs.containsKey(replicas.values().iterator().next().getCurrentReplicaLogDir()), "replica log dir " + replicas);

            // The producer above was idempotent (the Java client's default): its id, epoch and
            // last sequence (99: records 0-99 went to partition 0) are the partition's.
            List<ProducerState> active = admin.describeProducers(List.of(p0)).partitionResult(p0)
                .get(30, TimeUnit.SECONDS).activeProducers();
            check(active.size() == 1 && active.get(0).lastSequence() == 99 && active.get(0).producerId() >= 0
                && active.get(0).coordinatorEpoch().isEmpty() && active.get(0).currentTransactionStartOffset().isEmpty(),
                "describeProducers " + active);
            check(admin.describeProducers(List.of(p1)).partitionResult(p1).get(30, TimeUnit.SECONDS)
                .activeProducers().isEmpty(), "partition 1 has no producer");

            Collection<GroupListing> groups = admin.listGroups().all().get(30, TimeUnit.SECONDS);
            check(groups.stream().anyMatch(g -> g.groupId().equals(topic + "-group")), "groups " + groups);
            System.out.println("ok " + dir.totalBytes().getAsLong() + " " + r0.size());
        }
    }
}
