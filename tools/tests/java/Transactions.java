// The Java client's transactional producer against Rill, which has no transactions yet:
// initTransactions() fails at once (not after max.block.ms of COORDINATOR_NOT_AVAILABLE
// retries) with an exception that says transactions are not supported. Prints the seconds it
// took. Run with Java's source launcher:
//   java -cp "$(cat classpath.txt)" Transactions.java BOOTSTRAP
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.StringSerializer;

public class Transactions {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "java-tx");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        long started = System.nanoTime();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
            throw new IllegalStateException("initTransactions succeeded");
        } catch (org.apache.kafka.common.KafkaException e) {
            StringBuilder chain = new StringBuilder();
            for (Throwable t = e; t != null; t = t.getCause()) chain.append(t).append(" / ");
            if (e instanceof org.apache.kafka.common.errors.TimeoutException
                || !chain.toString().contains("does not support transactions")) {
                throw new IllegalStateException("unexpected failure: " + chain, e);
            }
            System.out.printf("ok %.1f %s%n", (System.nanoTime() - started) / 1e9, chain);
        }
    }
}
