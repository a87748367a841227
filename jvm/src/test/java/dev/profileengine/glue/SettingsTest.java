package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SettingsTest {
  @TempDir Path tmp;

  static CassandraSinkSettings settings() {
    return new CassandraSinkSettings(" 10.0.0.1, 10.0.0.2 ,", 9042, "datacenter1", "profile_engine",
        List.of("user_id", "score"), List.of("user_id", "event_time"));
  }

  @Test
  void elementTypeIsTheFourNamedFields() {
    RowTypeInfo t = CassandraSink.elementType();
    assertEquals(List.of("op", "user_id", "write_ts", "payload"), List.of(t.getFieldNames()));
    assertEquals(List.of(Types.STRING, Types.STRING, Types.LONG, Types.STRING), List.of(t.getFieldTypes()));
  }

  @Test
  void defaultsAndParsing() {
    CassandraSinkSettings s = settings();
    assertEquals(List.of("10.0.0.1", "10.0.0.2"), s.contactPoints());
    assertEquals("LOCAL_QUORUM", s.profileConsistency());
    assertEquals("LOCAL_QUORUM", s.predictionConsistency());
    assertEquals(512, s.maxInFlight());
    s.withConsistency("local_one", "QUORUM");
    assertEquals("LOCAL_ONE", s.profileConsistency());
    assertEquals("QUORUM", s.predictionConsistency());
  }

  @Test
  void invalidSettingsFailWhenTheJobIsBuilt() {
    assertThrows(IllegalArgumentException.class, () -> settings().withConsistency("LOCAL_QUORUM", "MOST"));
    assertThrows(IllegalArgumentException.class, () -> settings().withMaxInFlight(0));
    assertThrows(IllegalArgumentException.class, () -> settings().withCredentials("job", ""));
    assertThrows(IllegalArgumentException.class, () -> settings().withCredentials("job", "secrets/pw"));
    assertThrows(IllegalArgumentException.class, () -> settings().withTls("ca.pem", true));
    assertThrows(IllegalArgumentException.class, () -> new CassandraSinkSettings("", 9042, "dc", "ks",
        List.of("user_id"), List.of("user_id")));
    assertThrows(IllegalArgumentException.class, () -> new CassandraSinkSettings("h", 9042, "dc", "ks",
        List.of("score", "user_id"), List.of("user_id")));
    assertThrows(IllegalArgumentException.class, () -> new CassandraSinkSettings("h", 9042, "dc", "ks; DROP",
        List.of("user_id"), List.of("user_id")));
  }

  @Test
  void survivesJavaSerializationWithoutTheCallersList() throws Exception {
    List<String> cols = new ArrayList<>(List.of("user_id", "score"));
    CassandraSinkSettings s = new CassandraSinkSettings("h", 9042, "dc", "ks", cols, cols)
        .withCredentials("job", "env:PE_PW").withTls("/etc/ca.pem", false).withMaxRetries(3);
    cols.add("later");
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
      out.writeObject(new CassandraSink(s));
    }
    CassandraSink back;
    try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(bytes.toByteArray()))) {
      back = (CassandraSink) in.readObject();
    }
    assertEquals(new CassandraSink(s).toString(), back.toString());
    assertEquals(List.of("user_id", "score"), s.profileColumns());
    assertTrue(back.toString().contains("password=env:PE_PW"));
  }

  @Test
  void secretsFromTheEnvironmentOrAnExactFile() throws IOException {
    assertEquals("s3cr3t", Secrets.resolve("env:PW", Map.of("PW", "s3cr3t")));
    assertThrows(IllegalStateException.class, () -> Secrets.resolve("env:PW", Map.of()));
    Path file = tmp.resolve("pw");
    Files.write(file, "s3cr3t".getBytes(StandardCharsets.UTF_8));
    assertEquals("s3cr3t", Secrets.resolve(file.toString(), Map.of()));
    Files.write(file, "s3cr3t\n".getBytes(StandardCharsets.UTF_8));
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> Secrets.resolve(file.toString()));
    assertTrue(e.getMessage().contains("whitespace"));
    assertFalse(e.getMessage().contains("s3cr3t"));
    Files.write(file, new byte[0]);
    assertThrows(IllegalStateException.class, () -> Secrets.resolve(file.toString()));
    e = assertThrows(IllegalStateException.class, () -> Secrets.resolve(tmp.resolve("missing").toString()));
    assertTrue(e.getMessage().contains("cannot read"));
    assertThrows(IllegalArgumentException.class, () -> Secrets.resolve("relative/pw"));
  }

  @Test
  void tlsTrustsThePemCa() throws Exception {
    Path ca = Paths.get(getClass().getResource("/test-ca.pem").toURI());
    assertNotNull(CassandraSessions.sslContext(ca.toString()).createSSLEngine());
    Path notPem = tmp.resolve("x.pem");
    Files.write(notPem, "not a certificate".getBytes(StandardCharsets.UTF_8));
    assertThrows(IOException.class, () -> CassandraSessions.sslContext(notPem.toString()));
  }
}
