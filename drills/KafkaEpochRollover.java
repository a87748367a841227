import java.util.List;
import java.util.Properties;
import org.apache.flink.connector.kafka.sink.internal.FlinkKafkaInternalProducer;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * apache/flink-connector-kafka#321 at the level where it happens, with the connector's own producer
 * class (FlinkKafkaInternalProducer, 5.0.0-2.2) and kafka-clients on a transaction.version 2 broker:
 * one transactional id commits until its producer epoch reaches TARGET; then a transaction is opened,
 * its (producer id, epoch) taken as a checkpoint would, committed by the live producer (which, at epoch
 * 32766, rolls the epoch over), and committed again by a fresh producer resuming that (id, epoch), as
 * the KafkaCommitter does on recovery. A control id does the same at epoch 3. One line per step;
 * drills/kafka_epoch_rollover.py runs it and reads the lines that start with "RESULT".
 *
 * <p>args: BOOTSTRAP TOPIC ID_PREFIX TARGET_EPOCH
 */
public final class KafkaEpochRollover {
  private KafkaEpochRollover() {}

  static Properties props(String bootstrap) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("linger.ms", "0");
    p.put("key.serializer", ByteArraySerializer.class.getName());
    p.put("value.serializer", ByteArraySerializer.class.getName());
    return p;
  }

  static void run(String bootstrap, String topic, String tid, int target) {
    long t0 = System.nanoTime();
    FlinkKafkaInternalProducer<byte[], byte[]> live = new FlinkKafkaInternalProducer<>(props(bootstrap), tid);
    live.initTransactions();
    int commits = 0;
    // under transaction.version 2 every commit bumps the epoch: this is a pooled id's life, compressed
    while (live.getEpoch() < target) {
      live.beginTransaction();
      live.send(new ProducerRecord<>(topic, new byte[] {1}));
      live.commitTransaction();
      commits++;
      if (commits % 5000 == 0 || live.getEpoch() > 32760) {
        System.out.printf("  %s: %d commits, epoch %d, %.0f s%n", tid, commits, live.getEpoch(), secs(t0));
      }
    }
    live.beginTransaction();
    live.send(new ProducerRecord<>(topic, new byte[] {2}));
    live.flush();
    long pid = live.getProducerId();
    short epoch = live.getEpoch();
    System.out.printf("RESULT %s commits=%d seconds=%.1f committable_pid=%d committable_epoch=%d%n",
        tid, commits, secs(t0), pid, epoch);
    live.commitTransaction();
    System.out.printf("RESULT %s live_commit=ok pid_after=%d epoch_after=%d%n", tid, live.getProducerId(), live.getEpoch());
    live.close();
    FlinkKafkaInternalProducer<byte[], byte[]> recovered = new FlinkKafkaInternalProducer<>(props(bootstrap), tid);
    try {
      recovered.resumeTransaction(pid, epoch);
      recovered.commitTransaction();
      System.out.printf("RESULT %s recovery_recommit=ok%n", tid);
    } catch (Exception e) {
      System.out.printf("RESULT %s recovery_recommit=%s message=%s%n", tid, e.getClass().getSimpleName(), e.getMessage());
    } finally {
      recovered.close();
    }
  }

  static String chain(Throwable e) {
    StringBuilder b = new StringBuilder();
    for (Throwable t = e; t != null; t = t.getCause()) {
      b.append(b.length() == 0 ? "" : " <- ").append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
    }
    return b.toString();
  }

  static double secs(long t0) {
    return (System.nanoTime() - t0) / 1e9;
  }

  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    String topic = args[1];
    Properties ap = new Properties();
    ap.put("bootstrap.servers", bootstrap);
    try (Admin admin = Admin.create(ap)) {
      admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
    }
    for (String[] c : new String[][] {{"-control", "3"}, {"-rollover", args[3]}}) {
      try {
        run(bootstrap, topic, args[2] + c[0], Integer.parseInt(c[1]));
      } catch (Exception e) {
        // printed here: the source launcher fails on some exceptions' stack traces (JDK 17)
        System.out.printf("RESULT %s failed=%s%n", args[2] + c[0], chain(e));
      }
    }
  }
}
