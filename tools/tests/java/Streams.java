// A stateful Kafka Streams app (kafka-streams from Maven Central) against Rill: a KTable count
// per key and a windowed count, fed through a repartition (Streams purges it with
// DeleteRecords). Once the counts are complete it stops, its local state directory is deleted,
// and a new instance restores the stores from Rill's compacted changelog topics: the restored
// counts must equal the ones before. Exits non-zero on any mismatch. Run with Java's source
// launcher:
//   java -cp "$(cat classpath.txt)" Streams.java BOOTSTRAP STATE_DIR
import java.nio.file.*;
import java.time.Duration;
import java.time.Instant;
import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.*;
import org.apache.kafka.streams.*;
import org.apache.kafka.streams.kstream.*;
import org.apache.kafka.streams.state.*;

public class Streams {
    static final int KEYS = 10, PER_KEY = 50;
    static final String APP = "rill-streams";

    static void check(boolean ok, String what) {
        if (!ok) throw new IllegalStateException(what);
    }

    static KafkaStreams start(String bootstrap, Path state) {
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, String> words = builder.stream("words", Consumed.with(Serdes.String(), Serdes.String()));
        // selectKey forces a repartition topic, which Streams purges with DeleteRecords.
        KGroupedStream<String, String> grouped =
            words.selectKey((k, v) -> v).groupByKey(Grouped.with(Serdes.String(), Serdes.String()));
        grouped.count(Materialized.as("counts"));
        grouped.windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofHours(1))).count(Materialized.as("windowed"));
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, APP);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.STATE_DIR_CONFIG, state.toString());
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.start();
        return streams;
    }

    /// Waits until the store answers `expected` for every key (counts and windowed sums).
    static Map<String, Long> counts(KafkaStreams streams, long expected) throws Exception {
        long deadline = System.currentTimeMillis() + 120_000;
        Map<String, Long> got = new TreeMap<>();
        while (System.currentTimeMillis() < deadline) {
            got.clear();
            try {
                ReadOnlyKeyValueStore<String, Long> counts = streams.store(
                    StoreQueryParameters.fromNameAndType("counts", QueryableStoreTypes.keyValueStore()));
                ReadOnlyWindowStore<String, Long> windowed = streams.store(
                    StoreQueryParameters.fromNameAndType("windowed", QueryableStoreTypes.windowStore()));
                for (int k = 0; k < KEYS; k++) {
                    String key = "w" + k;
                    Long c = counts.get(key);
                    long w = 0;
                    try (WindowStoreIterator<Long> it =
                             windowed.fetch(key, Instant.now().minus(Duration.ofDays(1)), Instant.now().plus(Duration.ofDays(1)))) {
                        while (it.hasNext()) w += it.next().value;
                    }
                    got.put(key, c == null ? -1 : c);
                    got.put(key + "/windowed", w);
                }
                if (got.values().stream().allMatch(v -> v == expected)) return got;
            } catch (org.apache.kafka.streams.errors.InvalidStateStoreException e) {
                // Still restoring or rebalancing.
            }
            Thread.sleep(200);
        }
        throw new IllegalStateException("counts never reached " + expected + ": " + got + ", state " + streams.state());
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        Path state = Paths.get(args[1]);
        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(adminProps)) {
            admin.createTopics(List.of(new NewTopic("words", 3, (short) 1))).all().get(30, TimeUnit.SECONDS);
            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                for (int i = 0; i < KEYS * PER_KEY; i++) {
                    producer.send(new ProducerRecord<>("words", "line-" + i, "w" + (i % KEYS)));
                }
            }
            KafkaStreams first = start(bootstrap, state);
            Map<String, Long> before = counts(first, PER_KEY);
            first.close(Duration.ofSeconds(30));
            // The changelogs Streams created are compacted (the windowed one also deleted).
            for (String store : List.of("counts", "windowed")) {
                String topic = APP + "-" + store + "-changelog";
                ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
                String policy = admin.describeConfigs(List.of(r)).all().get(30, TimeUnit.SECONDS).get(r)
                    .get("cleanup.policy").value();
                check(policy.contains("compact"), topic + " cleanup.policy=" + policy);
            }
            // Local state gone: the stores come back from Rill alone.
            try (var walk = Files.walk(state)) {
                walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
            check(!Files.exists(state), "state directory deleted");
            KafkaStreams second = start(bootstrap, state);
            Map<String, Long> after = counts(second, PER_KEY);
            second.close(Duration.ofSeconds(30));
            check(before.equals(after), "restored " + after + " differ from " + before);
            System.out.println("ok " + after.size());
        }
    }
}
