package dev.profileengine.glue;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Collects write statements into groups that may travel as one request, and hands a group on
 * when it reaches {@code maxRows} rows or {@code maxBytes} bytes, or when {@link #drain} is
 * called (the sink's linger timer and its checkpoint flush).
 *
 * <p>Why: one request per row made a single local Cassandra node spend ~0.8 cores at 1,400
 * rows/s; each request has a fixed cost on the coordinator (native transport, stage hand-offs)
 * that a group of rows pays once. The sink groups by replica set (every row of a group is owned by
 * the node that coordinates it: no fan-out beyond normal replication) or by partition, never
 * arbitrarily: an unlogged batch spanning other nodes' partitions is what Cassandra warns about.
 *
 * <p>Knows nothing of the driver: the key and the size come with each item, so the bounds are
 * tested without Cassandra. Not thread-safe: the sink's task thread is its only caller (timers run
 * in the task's mailbox).
 */
final class WriteGrouper<S> {
  /** Receives each full or drained group; the sink submits it (which may block or fail). */
  interface Sender<S> {
    void send(List<S> group) throws IOException, InterruptedException;
  }

  private final int maxRows;
  private final int maxBytes;
  private final Sender<S> emit;
  /** Insertion order: drain() sends the oldest group first. */
  private final Map<Object, Group<S>> groups = new LinkedHashMap<>();
  private int pendingRows;

  WriteGrouper(int maxRows, int maxBytes, Sender<S> emit) {
    if (maxRows < 1 || maxBytes < 1) {
      throw new IllegalArgumentException("maxRows and maxBytes must be >= 1");
    }
    this.maxRows = maxRows;
    this.maxBytes = maxBytes;
    this.emit = emit;
  }

  /** Adds one statement of about {@code bytes} bytes to the group of {@code key}. */
  void add(Object key, S statement, int bytes) throws IOException, InterruptedException {
    Group<S> g = groups.get(key);
    if (g != null && g.bytes + bytes > maxBytes) {
      // the new row would push the group over the size bound: send what it has first
      groups.remove(key);
      pendingRows -= g.rows.size();
      emit.send(g.rows);
      g = null;
    }
    if (g == null) {
      g = new Group<>();
      groups.put(key, g);
    }
    g.rows.add(statement);
    g.bytes += bytes;
    pendingRows++;
    if (g.rows.size() >= maxRows || g.bytes >= maxBytes) {
      groups.remove(key);
      pendingRows -= g.rows.size();
      emit.send(g.rows);
    }
  }

  /** Sends every pending group, oldest first. */
  void drain() throws IOException, InterruptedException {
    Iterator<Group<S>> it = groups.values().iterator();
    while (it.hasNext()) {
      Group<S> g = it.next();
      it.remove();
      pendingRows -= g.rows.size();
      emit.send(g.rows);
    }
  }

  int pendingRows() {
    return pendingRows;
  }

  private static final class Group<S> {
    final List<S> rows = new ArrayList<>();
    int bytes;
  }
}
