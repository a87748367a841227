package dev.profileengine.glue;

import java.util.List;
import java.util.stream.Stream;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.runtime.state.CheckpointableKeyedStateBackend;
import org.apache.flink.runtime.state.KeyGroupRange;
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.runtime.state.KeyedStateBackend;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.types.Row;

/**
 * Reads and writes one keyed ValueState under many users' keys in one call from Python.
 *
 * <p>The profile operator is keyed by a route key but keeps one state entry per USER (see {@link
 * UserKeys}). Switching the backend's current key from Python took five pemja calls per user, and
 * with the value call it was the largest single cost on the Python thread (py-spy: a fifth of it
 * at the checkpoint flush). One call per batch or per flush does the switching here, in Java.
 *
 * <p>Refuses a user whose key group this subtask does not own: an entry written there would be
 * missing from this subtask's snapshots.
 */
public final class KeyedStateAccess {
  private KeyedStateBackend<Object> backend;
  private ValueState<Object> state;
  private int maxParallelism;
  private KeyGroupRange owned;
  private String[] groupKeys;
  /** Prefix of the per-key-group keys; never a user's key in the same state (a state of its own). */
  static final String GROUP_KEY_PREFIX = "kg-";

  /**
   * For Python: pemja reaches only Flink's own classpath by name, so the operator loads this class
   * from the job's class loader and calls Class.newInstance() (no arguments to convert), then
   * {@link #bind}.
   */
  public KeyedStateAccess() {}

  /** The operator's Java keyed state backend and ValueState; returns this. */
  @SuppressWarnings("unchecked")
  public KeyedStateAccess bind(Object backend, Object state, int maxParallelism) {
    if (!(backend instanceof CheckpointableKeyedStateBackend)) {
      throw new IllegalArgumentException("not a keyed state backend with key groups: " + backend);
    }
    this.backend = (KeyedStateBackend<Object>) backend;
    this.state = (ValueState<Object>) state;
    this.maxParallelism = maxParallelism;
    this.owned = ((CheckpointableKeyedStateBackend<?>) backend).getKeyGroupRange();
    this.groupKeys = null;
    return this;
  }

  public static KeyedStateAccess of(Object backend, Object state, int maxParallelism) {
    return new KeyedStateAccess().bind(backend, state, maxParallelism);
  }

  /** The value of every user (null where none), in order. */
  public Object[] getAll(Object users) throws Exception {
    Object[] us = array(users);
    Object[] out = new Object[us.length];
    for (int i = 0; i < us.length; i++) {
      switchTo((String) us[i]);
      out[i] = state.value();
    }
    return out;
  }

  /** Writes values[i] under users[i]. */
  public void putAll(Object users, Object values) throws Exception {
    Object[] us = array(users);
    Object[] vs = array(values);
    if (us.length != vs.length) {
      throw new IllegalArgumentException(us.length + " users but " + vs.length + " values");
    }
    for (int i = 0; i < us.length; i++) {
      switchTo((String) us[i]);
      state.update(vs[i]);
    }
  }

  /**
   * The keys (field 0 of the key Row) that have an entry in the named state on this subtask: after
   * a restore, the operator learns what it holds (the popularity stage re-sends those tops).
   */
  public Object[] keys(String stateName) {
    try (Stream<Object> keys = backend.getKeys(stateName, VoidNamespace.INSTANCE)) {
      return keys.map(k -> ((Row) k).getField(0)).toArray();
    }
  }

  /**
   * Writes {@code value} under one key per key group this subtask owns ({@link UserKeys#groupKeys}):
   * for a value every subtask holds the same copy of (the model registry), so that after a restore
   * with any parallelism each subtask finds it in the key groups it then owns.
   */
  public void putAllGroups(Object value) throws Exception {
    for (String key : groupKeys()) {
      switchTo(key);
      state.update(value);
    }
  }

  /**
   * The value {@link #putAllGroups} wrote, from the key groups this subtask owns; null if none
   * holds one. Every copy must be the same (each subtask applied the same control records before
   * the same barrier): copies that differ mean the state is not what this code wrote, and reading
   * it fails loudly rather than pick one.
   */
  public Object getAnyGroup() throws Exception {
    Object found = null;
    int present = 0;
    String[] keys = groupKeys();
    for (String key : keys) {
      switchTo(key);
      Object v = state.value();
      if (v == null) {
        continue;
      }
      if (found != null && !found.equals(v)) {
        throw new IllegalStateException("the per-key-group copies of this state differ between key groups of "
            + owned + " (at key " + key + "): refusing to pick one");
      }
      found = v;
      present++;
    }
    if (found != null && present != keys.length) {
      throw new IllegalStateException("only " + present + " of the " + keys.length + " key groups of " + owned
          + " hold a copy of the per-key-group state: it was not written by putAllGroups");
    }
    return found;
  }

  private String[] groupKeys() {
    if (groupKeys == null) {
      groupKeys = UserKeys.groupKeys(GROUP_KEY_PREFIX, maxParallelism, owned.getStartKeyGroup(),
          owned.getEndKeyGroup());
    }
    return groupKeys;
  }

  public void clear(String user) {
    switchTo(user);
    state.clear();
  }

  private void switchTo(String user) {
    Row key = UserKeys.keyOf(user);
    int group = KeyGroupRangeAssignment.assignToKeyGroup(key, maxParallelism);
    if (!owned.contains(group)) {
      throw new IllegalStateException("user '" + user + "' (key group " + group + ") reached a subtask owning "
          + owned + ": the micro-batcher and the profile operator must share (max) parallelism");
    }
    backend.setCurrentKey(key);
  }

  /** pemja hands a Python list over as a java.util.List or an Object[], depending on the call. */
  private static Object[] array(Object values) {
    if (values instanceof Object[]) {
      return (Object[]) values;
    }
    if (values instanceof List) {
      return ((List<?>) values).toArray();
    }
    throw new IllegalArgumentException("expected a list, got " + (values == null ? "null" : values.getClass()));
  }
}
