package dev.profileengine.glue;

import com.datastax.oss.driver.api.core.ConsistencyLevel;
import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.DefaultConsistencyLevel;
import com.datastax.oss.driver.api.core.cql.BoundStatement;
import com.datastax.oss.driver.api.core.cql.BoundStatementBuilder;
import com.datastax.oss.driver.api.core.cql.ColumnDefinitions;
import com.datastax.oss.driver.api.core.cql.PreparedStatement;
import com.datastax.oss.driver.api.core.cql.SimpleStatement;
import com.datastax.oss.driver.api.core.type.DataType;
import com.datastax.oss.driver.api.core.type.codec.TypeCodec;
import com.datastax.oss.driver.api.core.type.codec.registry.CodecRegistry;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.types.Row;

/**
 * The prepared statements of the sink and the mapping of one write request (a row of
 * {@link CassandraSink#elementType()}) to the bound statements that carry it out: one for
 * "profile" and "prediction", three for "erase" (the user's profile row, prediction partition and
 * recommendations row), one per item for "profiles" and "recommendations" (bundles of rows).
 *
 * <p>Every statement carries USING TIMESTAMP from the row, so the order in which concurrent
 * requests land does not matter: the newest write time wins, as schemas/cassandra.cql explains.
 */
final class WriteStatements {
  static final String PROFILE = "profile";
  static final String PREDICTION = "prediction";
  static final String ERASE = "erase";
  /** Many profile rows in one request row: payload [[user_id, write_ts, {column: value}], ...]. */
  static final String PROFILES = "profiles";
  /** Many recommendation rows in one request row, the same payload shape as PROFILES. */
  static final String RECOMMENDATIONS = "recommendations";

  private final Upsert profile;
  private final Upsert prediction;
  private final Upsert recommendation; // null when the settings name no recommendation columns
  private final PreparedStatement eraseProfile;
  private final PreparedStatement erasePredictions;
  private final PreparedStatement eraseRecommendations;
  private final ConsistencyLevel profileCl;
  private final ConsistencyLevel predictionCl;

  WriteStatements(CqlSession session, CassandraSinkSettings s) {
    String ks = s.keyspace();
    profileCl = DefaultConsistencyLevel.valueOf(s.profileConsistency());
    predictionCl = DefaultConsistencyLevel.valueOf(s.predictionConsistency());
    CodecRegistry codecs = session.getContext().getCodecRegistry();
    profile = new Upsert(session.prepare(insert(ks + ".profiles", s.profileColumns())), s.profileColumns(),
        codecs, profileCl);
    prediction = new Upsert(session.prepare(insert(ks + ".predictions", s.predictionColumns())),
        s.predictionColumns(), codecs, predictionCl);
    List<String> recCols = s.recommendationColumns();
    recommendation = recCols.isEmpty() ? null
        : new Upsert(session.prepare(insert(ks + ".recommendations", recCols)), recCols, codecs, profileCl);
    eraseProfile = session.prepare(erase(ks + ".profiles"));
    erasePredictions = session.prepare(erase(ks + ".predictions"));
    eraseRecommendations = session.prepare(erase(ks + ".recommendations"));
  }

  static SimpleStatement insert(String table, List<String> columns) {
    String marks = String.join(", ", java.util.Collections.nCopies(columns.size(), "?"));
    return SimpleStatement.newInstance(
        "INSERT INTO " + table + " (" + String.join(", ", columns) + ") VALUES (" + marks + ") USING TIMESTAMP ?");
  }

  static SimpleStatement erase(String table) {
    return SimpleStatement.newInstance("DELETE FROM " + table + " USING TIMESTAMP ? WHERE user_id = ?");
  }

  /** The statements of one request; a malformed row is an IllegalArgumentException naming it. */
  List<BoundStatement> statements(Row row) {
    String op = field(row, 0, String.class, "op");
    String userId = field(row, 1, String.class, "user_id");
    try {
      Long writeTs = field(row, 2, Long.class, "write_ts");
      boolean bundle = PROFILES.equals(op) || RECOMMENDATIONS.equals(op);
      if ((userId == null || userId.isEmpty()) && !bundle) {
        throw new IllegalArgumentException("user_id is empty");
      }
      if (writeTs == null) {
        throw new IllegalArgumentException("write_ts is null");
      }
      if (PROFILES.equals(op)) {
        return bundle(profile, op, field(row, 3, String.class, "payload"));
      }
      if (RECOMMENDATIONS.equals(op)) {
        if (recommendation == null) {
          throw new IllegalArgumentException("this sink was built without recommendation columns");
        }
        return bundle(recommendation, op, field(row, 3, String.class, "payload"));
      }
      if (PROFILE.equals(op)) {
        return List.of(profile.bind(userId, writeTs, field(row, 3, String.class, "payload")));
      } else if (PREDICTION.equals(op)) {
        return List.of(prediction.bind(userId, writeTs, field(row, 3, String.class, "payload")));
      } else if (ERASE.equals(op)) {
        return List.of(delete(eraseProfile, profileCl, userId, writeTs),
            delete(erasePredictions, predictionCl, userId, writeTs),
            delete(eraseRecommendations, profileCl, userId, writeTs));
      }
      throw new IllegalArgumentException("op must be profile, profiles, prediction, recommendations or erase");
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("bad Cassandra write request (op=" + op + ", user_id=" + userId + "): "
          + e.getMessage(), e);
    }
  }

  /**
   * The Python operator writes the changed profiles (and recommendation lists) of a checkpoint as
   * one bundle each: one crossing from Python to Java for all of them instead of one per user
   * (py-spy: the per-user side output was an eighth of the Python thread's time).
   */
  private static List<BoundStatement> bundle(Upsert upsert, String op, String payload) {
    JsonNode items = JsonColumns.parse(payload);
    if (items == null || !items.isArray()) {
      throw new IllegalArgumentException("a " + op + " payload is a JSON array of [user_id, write_ts, columns]");
    }
    List<BoundStatement> out = new ArrayList<>(items.size());
    for (JsonNode item : items) {
      if (!item.isArray() || item.size() != 3 || !item.get(0).isTextual() || item.get(0).asText().isEmpty()
          || !item.get(1).canConvertToLong() || !item.get(1).isIntegralNumber()) {
        throw new IllegalArgumentException("a " + op + " item is [user_id, write_ts, columns], got " + item);
      }
      out.add(upsert.bind(item.get(0).asText(), item.get(1).asLong(), item.get(2)));
    }
    return out;
  }

  /** A statement's size on the wire, roughly: what the grouper's byte bound counts. */
  static int approximateBytes(Row row, int statements) {
    Object userId = row.getArity() > 1 ? row.getField(1) : null;
    Object payload = row.getArity() > 3 ? row.getField(3) : null;
    int total = (userId instanceof String ? ((String) userId).length() : 0)
        + (payload instanceof String ? ((String) payload).length() : 0);
    return 32 + total / Math.max(1, statements);
  }

  private static <T> T field(Row row, int pos, Class<T> type, String name) {
    if (row.getArity() != 4) {
      throw new IllegalArgumentException("a write request has 4 fields (op, user_id, write_ts, payload), got "
          + row.getArity());
    }
    Object v = row.getField(pos);
    if (v != null && !type.isInstance(v)) {
      throw new IllegalArgumentException(name + " must be a " + type.getSimpleName() + ", got "
          + v.getClass().getSimpleName());
    }
    return type.cast(v);
  }

  private static BoundStatement delete(PreparedStatement ps, ConsistencyLevel cl, String userId, long ts) {
    return ps.boundStatementBuilder(ts, userId).setConsistencyLevel(cl).setIdempotence(true).build();
  }

  /** One INSERT: its JSON binder and the codec of each variable, looked up once. */
  private static final class Upsert {
    private final PreparedStatement ps;
    private final JsonColumns json;
    private final List<TypeCodec<Object>> codecs = new ArrayList<>();
    private final ConsistencyLevel cl;

    Upsert(PreparedStatement ps, List<String> columns, CodecRegistry registry, ConsistencyLevel cl) {
      this.ps = ps;
      this.cl = cl;
      ColumnDefinitions vars = ps.getVariableDefinitions();
      if (vars.size() != columns.size() + 1) {
        throw new IllegalStateException("prepared " + vars.size() + " variables for " + columns);
      }
      List<DataType> types = new ArrayList<>();
      for (int i = 0; i < columns.size(); i++) {
        types.add(vars.get(i).getType());
        codecs.add(registry.codecFor(vars.get(i).getType()));
      }
      this.json = new JsonColumns(columns, types);
    }

    BoundStatement bind(String userId, long writeTs, String payload) {
      return bind(userId, writeTs, JsonColumns.parse(payload));
    }

    BoundStatement bind(String userId, long writeTs, JsonNode payload) {
      Object[] values = json.values(userId, payload);
      BoundStatementBuilder b = ps.boundStatementBuilder();
      for (int i = 0; i < values.length; i++) {
        b = b.set(i, values[i], codecs.get(i));
      }
      return b.setLong(values.length, writeTs).setConsistencyLevel(cl).setIdempotence(true).build();
    }
  }
}
