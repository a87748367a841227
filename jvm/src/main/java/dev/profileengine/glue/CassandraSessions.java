package dev.profileengine.glue;

import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.CqlSessionBuilder;
import com.datastax.oss.driver.api.core.config.DefaultDriverOption;
import com.datastax.oss.driver.api.core.config.DriverConfigLoader;
import com.datastax.oss.driver.api.core.ssl.ProgrammaticSslEngineFactory;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * Opens the driver session of a sink writer, configured in code only: no application.conf is
 * read from the job's classpath, and the driver's own reference.conf (merged into the shaded glue
 * jar) supplies every other default.
 *
 * <p>Load balancing is the driver's default policy: token-aware (the routing key comes from the
 * bound partition key of each prepared statement) and DC-aware with an explicit local datacenter,
 * which driver 4 requires rather than guessing it from the contact points.
 */
final class CassandraSessions {
  private CassandraSessions() {}

  static CqlSession open(CassandraSinkSettings s) throws IOException {
    // the glue jar's own classloader: in a TaskManager the thread's context loader may be Flink's
    // and would not see the shaded driver's reference.conf
    ClassLoader loader = CassandraSessions.class.getClassLoader();
    List<String> contactPoints = new ArrayList<>();
    for (String host : s.contactPoints()) {
      contactPoints.add(host + ":" + s.port());
    }
    DriverConfigLoader config = DriverConfigLoader.programmaticBuilder(loader)
        .withStringList(DefaultDriverOption.CONTACT_POINTS, contactPoints)
        .withString(DefaultDriverOption.LOAD_BALANCING_LOCAL_DATACENTER, s.localDatacenter())
        .withDuration(DefaultDriverOption.REQUEST_TIMEOUT, s.requestTimeout())
        // one connection per node by default: it must carry the whole in-flight bound
        .withInt(DefaultDriverOption.CONNECTION_MAX_REQUESTS, Math.max(1024, s.maxInFlight()))
        // token map and prepared-statement metadata need our keyspace only
        .withStringList(DefaultDriverOption.METADATA_SCHEMA_REFRESHED_KEYSPACES,
            Collections.singletonList(s.keyspace()))
        .withString(DefaultDriverOption.SESSION_NAME, "profile-engine-sink")
        // every statement carries USING TIMESTAMP: a client timestamp would be ignored, and its
        // default generator probes for jnr (excluded) and logs a stack trace in every TaskManager
        .withString(DefaultDriverOption.TIMESTAMP_GENERATOR_CLASS, "ServerSideTimestampGenerator")
        .build();
    CqlSessionBuilder builder = CqlSession.builder().withClassLoader(loader).withConfigLoader(config);
    if (!s.username().isEmpty()) {
      // resolved here, on the TaskManager; from now on only the driver's auth provider holds it
      builder = builder.withAuthCredentials(s.username(), Secrets.resolve(s.passwordRef()));
    }
    if (!s.sslCaFile().isEmpty()) {
      // no reverse DNS: the certificate must name the contact point as given, as with the Python driver
      builder = builder.withSslEngineFactory(
          new ProgrammaticSslEngineFactory(sslContext(s.sslCaFile()), null, s.sslCheckHostname(), false));
    }
    return builder.build();
  }

  /** An SSLContext trusting exactly the certificates of a PEM file, as security.py's ssl context. */
  static SSLContext sslContext(String caPemFile) throws IOException {
    try (InputStream in = Files.newInputStream(Paths.get(caPemFile))) {
      Collection<? extends Certificate> certs = CertificateFactory.getInstance("X.509").generateCertificates(in);
      if (certs.isEmpty()) {
        throw new IOException("no certificate in " + caPemFile);
      }
      KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
      trust.load(null, null);
      int i = 0;
      for (Certificate c : certs) {
        trust.setCertificateEntry("ca-" + i++, c);
      }
      TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
      tmf.init(trust);
      SSLContext ctx = SSLContext.getInstance("TLS");
      ctx.init(null, tmf.getTrustManagers(), null);
      return ctx;
    } catch (GeneralSecurityException e) {
      throw new IOException("cannot use the CA file " + caPemFile + ": " + e.getMessage(), e);
    }
  }
}
