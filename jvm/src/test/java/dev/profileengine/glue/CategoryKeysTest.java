package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.functions.util.ListCollector;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class CategoryKeysTest {
  private static final CategoryKeys KEYS = new CategoryKeys(3, 4); // user_event.avsc: item_id, category_id

  private static List<Row> apply(Row event) {
    List<Row> out = new ArrayList<>();
    KEYS.flatMap(Row.of(event.getField(1), event), new ListCollector<>(out));
    return out;
  }

  private static Row event(String item, String category) {
    return Row.of("e1", "u1", "view", item, category, null, null, 1_511_568_000_000L, null, "shop");
  }

  @Test
  void aCategoryCopyAndAGlobalCopyWhoseCategoryIsGlobal() {
    Row ev = event("i1", "c1");
    List<Row> out = apply(ev);
    assertEquals(2, out.size());
    assertEquals("c1", out.get(0).getField(0));
    assertEquals(ev, out.get(0).getField(1));
    assertEquals(CategoryKeys.GLOBAL, out.get(1).getField(0));
    Row global = (Row) out.get(1).getField(1);
    assertEquals(CategoryKeys.GLOBAL, global.getField(4));
    assertEquals("i1", global.getField(3));
    assertEquals("c1", ev.getField(4), "the original event is not changed");
  }

  @Test
  void eventsWithoutItemOrCategoryCountNowhere() {
    assertTrue(apply(event(null, "c1")).isEmpty());
    assertTrue(apply(event("i1", null)).isEmpty());
    assertTrue(apply(event("i1", "")).isEmpty());
    assertThrows(IllegalArgumentException.class, () -> new CategoryKeys(4, 4));
  }
}
