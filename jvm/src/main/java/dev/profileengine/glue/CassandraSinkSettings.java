package dev.profileengine.glue;

import java.io.Serializable;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Locale;

/**
 * Everything {@link CassandraSink} needs to open its session, serialized into the job graph.
 *
 * <p>Holds no secret: the password is a reference ({@code env:NAME} or an absolute file path),
 * resolved by {@link Secrets} on the TaskManager when a writer opens, because the job graph is
 * visible in the web UI and in logs (same rule as flink_jobs/security.py). Required values are
 * constructor arguments; the rest have defaults and fluent {@code with*} setters (convenient from
 * py4j, which cannot call a builder with overloads easily).
 */
public final class CassandraSinkSettings implements Serializable {
  private static final long serialVersionUID = 1L;
  private static final List<String> CONSISTENCIES = Arrays.asList(
      "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_ONE", "LOCAL_QUORUM", "EACH_QUORUM", "ANY");

  private final ArrayList<String> contactPoints;
  private final int port;
  private final String localDatacenter;
  private final String keyspace;
  private final ArrayList<String> profileColumns;
  private final ArrayList<String> predictionColumns;
  private ArrayList<String> recommendationColumns = new ArrayList<>();
  private String profileConsistency = "LOCAL_QUORUM";
  private String predictionConsistency = "LOCAL_QUORUM";
  private int maxInFlight = 512;
  private String grouping = "REPLICA_SET";
  private int batchMaxRows = 64;
  private long batchLingerMs = 10;
  private int maxRetries = 8;
  private long retryBaseDelayMs = 100;
  private long retryMaxDelayMs = 5_000;
  private long requestTimeoutMs = 10_000;
  private String username = "";
  private String passwordRef = "";
  private String sslCaFile = "";
  private boolean sslCheckHostname = true;

  /**
   * @param contactPoints comma separated hosts, as config {@code cassandra_hosts}
   * @param profileColumns columns of ks.profiles in payload order, user_id first
   * @param predictionColumns columns of ks.predictions, user_id first
   */
  public CassandraSinkSettings(String contactPoints, int port, String localDatacenter, String keyspace,
      List<String> profileColumns, List<String> predictionColumns) {
    this.contactPoints = new ArrayList<>();
    for (String h : contactPoints.split(",")) {
      if (!h.isBlank()) {
        this.contactPoints.add(h.strip());
      }
    }
    require(!this.contactPoints.isEmpty(), "no contact point in '" + contactPoints + "'");
    require(port > 0 && port < 65536, "port out of range: " + port);
    require(localDatacenter != null && !localDatacenter.isBlank(), "localDatacenter is required");
    require(keyspace != null && keyspace.matches("[A-Za-z][A-Za-z0-9_]*"), "bad keyspace name: " + keyspace);
    this.port = port;
    this.localDatacenter = localDatacenter;
    this.keyspace = keyspace;
    this.profileColumns = columns("profile", profileColumns);
    this.predictionColumns = columns("prediction", predictionColumns);
  }

  private static ArrayList<String> columns(String table, List<String> cols) {
    require(cols != null && !cols.isEmpty(), table + " columns are required");
    // the erase statements and the routing key rely on it
    require("user_id".equals(cols.get(0)), table + " columns must start with user_id, got " + cols);
    for (String c : cols) {
      require(c != null && c.matches("[a-z_][a-z0-9_]*"), "bad " + table + " column name: " + c);
    }
    require(cols.stream().distinct().count() == cols.size(), "duplicate " + table + " column in " + cols);
    return new ArrayList<>(cols);
  }

  private static void require(boolean ok, String message) {
    if (!ok) {
      throw new IllegalArgumentException(message);
    }
  }

  private static String consistency(String level) {
    String up = level == null ? "" : level.strip().toUpperCase(Locale.ROOT);
    require(CONSISTENCIES.contains(up), "unknown consistency level '" + level + "', one of " + CONSISTENCIES);
    return up;
  }

  /** Columns of ks.recommendations, user_id first: enables op "recommendations" (none: refused). */
  public CassandraSinkSettings withRecommendationColumns(List<String> cols) {
    this.recommendationColumns = columns("recommendation", cols);
    return this;
  }

  public List<String> recommendationColumns() {
    return recommendationColumns;
  }

  public CassandraSinkSettings withConsistency(String profiles, String predictions) {
    this.profileConsistency = consistency(profiles);
    this.predictionConsistency = consistency(predictions);
    return this;
  }

  /** Most requests (rows; an erase is two) awaiting their ack; write() blocks beyond it. */
  public CassandraSinkSettings withMaxInFlight(int maxInFlight) {
    require(maxInFlight >= 1, "maxInFlight must be >= 1");
    this.maxInFlight = maxInFlight;
    return this;
  }

  /**
   * How rows share requests (see {@link WriteRouting}): replica_set, partition or none; at most
   * {@code maxRows} rows per unlogged batch, and a row waits at most {@code lingerMs} for others.
   */
  public CassandraSinkSettings withGrouping(String mode, int maxRows, long lingerMs) {
    this.grouping = WriteRouting.Grouping.parse(mode).name();
    require(maxRows >= 1, "batch maxRows must be >= 1");
    require(lingerMs >= 1, "batch lingerMs must be >= 1");
    this.batchMaxRows = maxRows;
    this.batchLingerMs = lingerMs;
    return this;
  }

  /** Retries of one request after its first failure; then the writer fails the job. */
  public CassandraSinkSettings withMaxRetries(int maxRetries) {
    require(maxRetries >= 0, "maxRetries must be >= 0");
    this.maxRetries = maxRetries;
    return this;
  }

  /** Backoff between attempts: base * 2^(retry-1), at most max, with +-20% jitter. */
  public CassandraSinkSettings withRetryBackoffMs(long baseMs, long maxMs) {
    require(baseMs >= 0 && maxMs >= baseMs, "need 0 <= baseMs <= maxMs");
    this.retryBaseDelayMs = baseMs;
    this.retryMaxDelayMs = maxMs;
    return this;
  }

  public CassandraSinkSettings withRequestTimeoutMs(long ms) {
    require(ms >= 1, "request timeout must be positive");
    this.requestTimeoutMs = ms;
    return this;
  }

  /**
   * Log in with PasswordAuthenticator. {@code passwordRef} is {@code env:NAME} or an absolute path
   * of a file holding exactly the password. An empty username turns the login off.
   */
  public CassandraSinkSettings withCredentials(String username, String passwordRef) {
    String user = username == null ? "" : username;
    String ref = passwordRef == null ? "" : passwordRef;
    require(user.isEmpty() || !ref.isEmpty(), "a username needs a password reference");
    if (!ref.isEmpty()) {
      Secrets.checkReference(ref);
    }
    this.username = user;
    this.passwordRef = user.isEmpty() ? "" : ref;
    return this;
  }

  /** TLS trusting the CA certificates of a PEM file (absolute path); empty: plaintext. */
  public CassandraSinkSettings withTls(String caPemFile, boolean checkHostname) {
    String ca = caPemFile == null ? "" : caPemFile;
    require(ca.isEmpty() || java.nio.file.Paths.get(ca).isAbsolute(),
        "the CA file path must be absolute (the TaskManager's working directory is not the repository): " + ca);
    this.sslCaFile = ca;
    this.sslCheckHostname = checkHostname;
    return this;
  }

  public List<String> contactPoints() {
    return Collections.unmodifiableList(contactPoints);
  }

  public int port() {
    return port;
  }

  public String localDatacenter() {
    return localDatacenter;
  }

  public String keyspace() {
    return keyspace;
  }

  public List<String> profileColumns() {
    return Collections.unmodifiableList(profileColumns);
  }

  public List<String> predictionColumns() {
    return Collections.unmodifiableList(predictionColumns);
  }

  public String profileConsistency() {
    return profileConsistency;
  }

  public String predictionConsistency() {
    return predictionConsistency;
  }

  public int maxInFlight() {
    return maxInFlight;
  }

  WriteRouting.Grouping grouping() {
    return WriteRouting.Grouping.valueOf(grouping);
  }

  public int batchMaxRows() {
    return batchMaxRows;
  }

  /**
   * Bytes per batch, as counted by {@link WriteStatements#approximateBytes} (the JSON payloads):
   * Cassandra counted 57-60 KiB for profile batches of at most 40,000 such bytes, so 20,000 keeps
   * a batch near 30 KiB, below the default batch_size_fail_threshold of 50 KiB, which rejects a
   * bigger batch whatever the grouping.
   */
  public int batchMaxBytes() {
    return 20_000;
  }

  public long batchLingerMs() {
    return batchLingerMs;
  }

  public int maxRetries() {
    return maxRetries;
  }

  public long retryBaseDelayMs() {
    return retryBaseDelayMs;
  }

  public long retryMaxDelayMs() {
    return retryMaxDelayMs;
  }

  public Duration requestTimeout() {
    return Duration.ofMillis(requestTimeoutMs);
  }

  public String username() {
    return username;
  }

  public String passwordRef() {
    return passwordRef;
  }

  public String sslCaFile() {
    return sslCaFile;
  }

  public boolean sslCheckHostname() {
    return sslCheckHostname;
  }

  @Override
  public String toString() {
    // the password reference is a path or a variable name, never the secret: safe to show
    return "CassandraSinkSettings{" + contactPoints + ":" + port + ", dc=" + localDatacenter + ", ks=" + keyspace
        + ", cl=" + profileConsistency + "/" + predictionConsistency + ", maxInFlight=" + maxInFlight
        + ", grouping=" + grouping + "/" + batchMaxRows + " rows/" + batchLingerMs + " ms"
        + ", maxRetries=" + maxRetries + ", timeoutMs=" + requestTimeoutMs
        + (username.isEmpty() ? "" : ", user=" + username + ", password=" + passwordRef)
        + (sslCaFile.isEmpty() ? "" : ", tls ca=" + sslCaFile + " checkHostname=" + sslCheckHostname) + "}";
  }
}
