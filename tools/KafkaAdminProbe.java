import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;

/**
 * Two Admin API reads the Python client (confluent-kafka) does not offer, for tools/kafka_admin.py:
 *
 * <pre>
 *   java -cp "RUN/lib/kafka/*" tools/KafkaAdminProbe.java features BOOTSTRAP
 *       one line per finalized feature: NAME=MAX_LEVEL (KIP-584 DescribeFeatures)
 *   java -cp "RUN/lib/kafka/*" tools/KafkaAdminProbe.java transactions BOOTSTRAP PREFIX
 *       one line per transactional id starting with PREFIX: ID PRODUCER_ID PRODUCER_EPOCH STATE
 * </pre>
 *
 * <p>Run as a single-file source program (Java 11+) on the broker's own jars, so it needs no build
 * and no jar of its own. PLAINTEXT only: it checks the local test stack.
 */
public final class KafkaAdminProbe {
  private KafkaAdminProbe() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 2) {
      throw new IllegalArgumentException("usage: features BOOTSTRAP | transactions BOOTSTRAP PREFIX");
    }
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    try (Admin admin = Admin.create(p)) {
      if ("features".equals(args[0])) {
        Map<String, FinalizedVersionRange> fin = admin.describeFeatures().featureMetadata().get().finalizedFeatures();
        new TreeMap<>(fin).forEach((name, range) -> System.out.println(name + "=" + range.maxVersionLevel()));
      } else if ("transactions".equals(args[0]) && args.length == 3) {
        List<String> ids = new ArrayList<>();
        for (TransactionListing t : admin.listTransactions().all().get()) {
          if (t.transactionalId().startsWith(args[2])) {
            ids.add(t.transactionalId());
          }
        }
        if (ids.isEmpty()) {
          return;
        }
        Map<String, TransactionDescription> d = admin.describeTransactions(ids).all().get();
        new TreeMap<>(d).forEach((id, t) -> System.out.println(
            id + " " + t.producerId() + " " + t.producerEpoch() + " " + t.state()));
      } else {
        throw new IllegalArgumentException("unknown command " + String.join(" ", args));
      }
    }
  }
}
