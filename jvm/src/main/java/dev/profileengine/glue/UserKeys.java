package dev.profileengine.glue;

import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.types.Row;

/**
 * Keys of the profile operator's state, as the keyed stream sees them.
 *
 * <p>The profile operator is keyed by the batch's route key, but keeps each USER's profile under
 * the user's own key: for every user of a batch it switches the state backend's current key to
 * {@link #keyOf} (flink_jobs/operators.py builds the same Row). A key is a one-field Row, exactly
 * what PyFlink's KeyByKeySelector builds, so a user's key group here is the one Flink's key-group
 * assignment uses on restore and rescale.
 */
public final class UserKeys {
  private static final int MAX_ROUTE_KEY_SEARCH = 1 << 20;

  private UserKeys() {}

  /** The state key of a user (and of a route key): Row(value), as KeyByKeySelector builds it. */
  public static Row keyOf(String value) {
    Row key = new Row(1);
    key.setField(0, value);
    return key;
  }

  public static int keyGroupOf(String value, int maxParallelism) {
    return KeyGroupRangeAssignment.assignToKeyGroup(keyOf(value), maxParallelism);
  }

  /** Index of the profile subtask that owns the user's key group. */
  public static int subtaskOf(String userId, int maxParallelism, int parallelism) {
    return KeyGroupRangeAssignment.computeOperatorIndexForKeyGroup(
        maxParallelism, parallelism, keyGroupOf(userId, maxParallelism));
  }

  /**
   * One route key per subtask: a string whose key group that subtask owns, so a batch keyed by
   * routeKeys[i] is processed by subtask i. Deterministic (the first such string of "r0", "r1", ...).
   */
  public static String[] routeKeys(int maxParallelism, int parallelism) {
    if (parallelism < 1 || parallelism > maxParallelism) {
      throw new IllegalArgumentException(
          "parallelism " + parallelism + " must be in 1.." + maxParallelism + " (max parallelism)");
    }
    String[] keys = new String[parallelism];
    int found = 0;
    for (int n = 0; found < parallelism && n < MAX_ROUTE_KEY_SEARCH; n++) {
      String candidate = "r" + n;
      int subtask = subtaskOf(candidate, maxParallelism, parallelism);
      if (keys[subtask] == null) {
        keys[subtask] = candidate;
        found++;
      }
    }
    if (found < parallelism) {
      throw new IllegalStateException("no route key found for every one of " + parallelism + " subtasks");
    }
    return keys;
  }

  /**
   * For each key group of {@code range}, in order, the first string {@code prefix + n} (n = 0, 1,
   * ...) whose key group it is: deterministic, so every subtask that owns a key group, before or
   * after a rescale, computes the same key for it. For state that every subtask keeps one copy of
   * (the active model): written under each owned group's key, it is found by whichever subtask owns
   * any key group after a restore with another parallelism.
   */
  public static String[] groupKeys(String prefix, int maxParallelism, int firstGroup, int lastGroup) {
    if (firstGroup < 0 || lastGroup >= maxParallelism || firstGroup > lastGroup) {
      throw new IllegalArgumentException(
          "key groups " + firstGroup + ".." + lastGroup + " outside 0.." + (maxParallelism - 1));
    }
    int wanted = lastGroup - firstGroup + 1;
    String[] keys = new String[wanted];
    int found = 0;
    // about maxParallelism * ln(maxParallelism) candidates for a full range (coupon collector)
    for (long n = 0; found < wanted && n < 64L * MAX_ROUTE_KEY_SEARCH; n++) {
      String candidate = prefix + n;
      int group = keyGroupOf(candidate, maxParallelism);
      if (group >= firstGroup && group <= lastGroup && keys[group - firstGroup] == null) {
        keys[group - firstGroup] = candidate;
        found++;
      }
    }
    if (found < wanted) {
      throw new IllegalStateException("no key found for every key group " + firstGroup + ".." + lastGroup);
    }
    return keys;
  }
}
