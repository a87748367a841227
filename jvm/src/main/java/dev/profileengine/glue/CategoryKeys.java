package dev.profileengine.glue;

import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Re-keys valid events, (user_id, event) rows, for the "popular now" stage: (category_id, event)
 * and, for the all-categories list, (GLOBAL, the event with category_id GLOBAL). The Python stage
 * (flink_jobs/popularity_op.py) keys its windows by the event's category field, so the GLOBAL copy
 * must carry GLOBAL there: the micro-batch payload holds the event only, not its key.
 *
 * <p>Events without an item or a category count nowhere: there is nothing to recommend from them.
 * GLOBAL must equal udfs.popularity.GLOBAL (a test checks it).
 */
public class CategoryKeys implements FlatMapFunction<Row, Row> {
  private static final long serialVersionUID = 1L;
  public static final String GLOBAL = "*";
  private final int itemIndex;
  private final int categoryIndex;

  /** Positions of item_id and category_id in the event row (user_event.avsc order). */
  public CategoryKeys(int itemIndex, int categoryIndex) {
    if (itemIndex < 0 || categoryIndex < 0 || itemIndex == categoryIndex) {
      throw new IllegalArgumentException("bad field positions " + itemIndex + ", " + categoryIndex);
    }
    this.itemIndex = itemIndex;
    this.categoryIndex = categoryIndex;
  }

  @Override
  public void flatMap(Row keyed, Collector<Row> out) {
    Row event = (Row) keyed.getField(1);
    Object item = event.getField(itemIndex);
    Object category = event.getField(categoryIndex);
    if (item == null || category == null || ((String) category).isEmpty()) {
      return;
    }
    out.collect(Row.of(category, event));
    Row global = Row.copy(event);
    global.setField(categoryIndex, GLOBAL);
    out.collect(Row.of(GLOBAL, global));
  }
}
