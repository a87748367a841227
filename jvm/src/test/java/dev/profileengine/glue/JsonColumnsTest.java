package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.datastax.oss.driver.api.core.type.DataType;
import com.datastax.oss.driver.api.core.type.DataTypes;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class JsonColumnsTest {
  private static final List<String> COLUMNS = Arrays.asList(
      "user_id", "name", "n", "segment", "score", "active", "top", "features");
  private static final List<DataType> TYPES = Arrays.asList(
      DataTypes.TEXT, DataTypes.TEXT, DataTypes.BIGINT, DataTypes.INT, DataTypes.DOUBLE, DataTypes.BOOLEAN,
      DataTypes.frozenMapOf(DataTypes.TEXT, DataTypes.DOUBLE), DataTypes.frozenListOf(DataTypes.DOUBLE));
  private final JsonColumns cols = new JsonColumns(COLUMNS, TYPES);

  private Object[] values(String json) {
    return cols.values("u1", json);
  }

  private String error(String json) {
    return assertThrows(IllegalArgumentException.class, () -> values(json)).getMessage();
  }

  @Test
  void everyTypeBindsToTheDriversDefaultJavaType() {
    Object[] v = values("{\"name\":\"Ann \\u00e9\",\"n\":9007199254740993,\"segment\":-3,\"score\":0.25,"
        + "\"active\":true,\"top\":{\"books\":1.5,\"toys\":2},\"features\":[1,2.5,-0.0]}");
    assertArrayEquals(new Object[] {"u1", "Ann \u00e9", 9007199254740993L, -3, 0.25, true,
        Map.of("books", 1.5, "toys", 2.0), List.of(1.0, 2.5, -0.0)}, v);
    assertEquals(Long.class, v[2].getClass()); // a Double here would lose the last digit above
    assertEquals(Integer.class, v[3].getClass());
  }

  @Test
  void nullAndMissingBindNull() {
    Object[] v = values("{\"name\":null,\"top\":null}");
    assertEquals("u1", v[0]);
    for (int i = 1; i < v.length; i++) {
      assertNull(v[i], COLUMNS.get(i));
    }
  }

  @Test
  void pythonsNonFiniteFloatsAreDoubles() {
    assertTrue(Double.isNaN((Double) values("{\"score\":NaN}")[4]));
    assertEquals(Double.NEGATIVE_INFINITY, values("{\"score\":-Infinity}")[4]);
  }

  @Test
  void integralFloatsAreAcceptedForIntegersFractionsAreNot() {
    assertEquals(3L, values("{\"n\":3.0}")[2]);
    assertTrue(error("{\"n\":3.5}").contains("column 'n'"));
    assertTrue(error("{\"segment\":2147483648}").contains("column 'segment'"));
    assertTrue(error("{\"n\":9223372036854775808}").contains("column 'n'"));
    assertTrue(error("{\"n\":9.3e18}").contains("column 'n'"));
  }

  @Test
  void wrongJsonTypesAreRejectedNamingTheColumn() {
    assertTrue(error("{\"n\":\"12\"}").startsWith("column 'n': expected a bigint value, got \"12\""));
    assertTrue(error("{\"name\":12}").contains("column 'name'"));
    assertTrue(error("{\"score\":\"0.5\"}").contains("column 'score'"));
    assertTrue(error("{\"active\":1}").contains("column 'active'"));
    assertTrue(error("{\"features\":{\"a\":1}}").contains("a JSON array"));
    assertTrue(error("{\"top\":[1]}").contains("a JSON object"));
    assertTrue(error("{\"top\":{\"a\":\"x\"}}").contains("column 'top'"));
  }

  @Test
  void collectionsCannotHoldNull() {
    assertTrue(error("{\"features\":[1,null]}").contains("no null element"));
    assertTrue(error("{\"top\":{\"a\":null}}").contains("no null value"));
  }

  @Test
  void badPayloadsAreClearErrors() {
    assertTrue(error("{\"name\":").startsWith("payload is not valid JSON"));
    assertTrue(error("").contains("JSON object"));
    assertTrue(error(null).contains("JSON object"));
    assertTrue(error("[1,2]").contains("JSON object"));
    assertTrue(error("{\"nmae\":\"x\"}").contains("'nmae' not in"));
  }

  @Test
  void userIdComesFromTheRowAndMustAgreeWithThePayload() {
    assertEquals("u1", values("{\"user_id\":\"u1\"}")[0]);
    assertTrue(error("{\"user_id\":\"u2\"}").contains("differs"));
  }

  @Test
  void unsupportedColumnTypesFailWhenBuilt() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> new JsonColumns(List.of("user_id", "at"), List.of(DataTypes.TEXT, DataTypes.TIMESTAMP)));
    assertTrue(e.getMessage().contains("'at'"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> new JsonColumns(List.of("user_id", "m"),
        List.of(DataTypes.TEXT, DataTypes.frozenMapOf(DataTypes.INT, DataTypes.DOUBLE))));
    assertThrows(IllegalArgumentException.class,
        () -> new JsonColumns(List.of("id", "x"), List.of(DataTypes.TEXT, DataTypes.TEXT)));
  }
}
