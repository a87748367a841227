package dev.profileengine.glue;

import org.apache.flink.api.common.operators.ProcessingTimeService.ProcessingTimeCallback;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.Histogram;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.runtime.metrics.DescriptiveStatisticsHistogram;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Groups valid events into one micro-batch per downstream subtask, so the keyed Python operator is
 * called once per batch instead of once per event (the per-call crossing into Python is the job's
 * main cost, see ARCHITECTURE.md).
 *
 * <p>Input: (user_id, event row). Output: (route key, (payload)). The downstream operator keeps one
 * keyed state entry per USER (it switches the key context to each user of a batch, see {@link
 * UserKeys}), so state rescales with Flink's key groups like any keyed state. A batch only has to
 * reach the subtask that owns its users' key groups: events are grouped by that subtask's index
 * and the batch is keyed by a route key chosen to fall into that subtask's key-group range. With
 * parallelism p there are at most p batches per flush, whatever the max parallelism.
 *
 * <p>The batcher must run with the same parallelism and max parallelism as the profile operator
 * (the job sets both); a user routed to the wrong subtask fails loudly in {@link UserKeys}.
 *
 * <p>Payload: a JSON array of events (fields in user_event.avsc order), or a commit marker {@code
 * {"checkpoint":id}} that tells the profile operator to write its pending profiles to keyed state
 * and Cassandra now, before the barrier that follows it.
 *
 * <p>Stateless on purpose: batches are flushed when one holds maxEvents, after maxDelayMs of
 * processing time, before every checkpoint barrier (prepareSnapshotPreBarrier), before forwarding a
 * watermark (so a watermark never overtakes events it covers) and at end of input. No event is
 * buffered across a checkpoint, so exactly-once needs no state here.
 */
public class MicroBatcher extends AbstractStreamOperator<Row>
    implements OneInputStreamOperator<Row, Row>, BoundedOneInput, ProcessingTimeCallback {
  private static final long serialVersionUID = 1L;
  private final int maxEvents;
  private final long maxDelayMs;
  private final String metricGroup;

  private transient int parallelism;
  private transient int maxParallelism;
  private transient StringBuilder[] payloads;
  private transient int[] counts;
  private transient String[] routeKeys;
  private transient boolean timerSet;
  private transient Counter batches;
  private transient Counter events;
  private transient Histogram batchSize;

  public MicroBatcher(int maxEvents, long maxDelayMs) {
    this(maxEvents, maxDelayMs, "profile_engine");
  }

  /**
   * @param metricGroup group of this batcher's counters: a second batcher in the job (the
   *     popularity stage's) must not add to the profile batcher's figures
   */
  public MicroBatcher(int maxEvents, long maxDelayMs, String metricGroup) {
    if (maxEvents < 1 || maxDelayMs < 1) {
      throw new IllegalArgumentException("maxEvents and maxDelayMs must be positive");
    }
    this.maxEvents = maxEvents;
    this.maxDelayMs = maxDelayMs;
    this.metricGroup = metricGroup;
  }

  /** Type of the output: Row(f0 = route key, f1 = Row(payload)), the shape PyFlink keys by. */
  public static RowTypeInfo batchType() {
    RowTypeInfo payload = new RowTypeInfo(new TypeInformation<?>[] {Types.STRING}, new String[] {"payload"});
    return new RowTypeInfo(Types.STRING, payload);
  }

  /** The payload of a commit marker. */
  public static String commitMarker(long checkpointId) {
    return "{\"checkpoint\":" + checkpointId + "}";
  }

  @Override
  public void open() throws Exception {
    super.open();
    parallelism = getRuntimeContext().getTaskInfo().getNumberOfParallelSubtasks();
    maxParallelism = getRuntimeContext().getTaskInfo().getMaxNumberOfParallelSubtasks();
    payloads = new StringBuilder[parallelism];
    counts = new int[parallelism];
    routeKeys = UserKeys.routeKeys(maxParallelism, parallelism);
    for (int i = 0; i < parallelism; i++) {
      payloads[i] = new StringBuilder(4096);
    }
    MetricGroup group = getRuntimeContext().getMetricGroup().addGroup(metricGroup);
    batches = group.counter("batches");
    events = group.counter("batched_events");
    batchSize = group.histogram("batch_size", new DescriptiveStatisticsHistogram(1000));
  }

  @Override
  public void processElement(StreamRecord<Row> element) throws Exception {
    Row keyed = element.getValue();
    Row event = (Row) keyed.getField(1);
    int target = UserKeys.subtaskOf((String) keyed.getField(0), maxParallelism, parallelism);
    StringBuilder sb = payloads[target];
    sb.append(counts[target] == 0 ? '[' : ',').append('[');
    for (int i = 0; i < event.getArity(); i++) {
      if (i > 0) {
        sb.append(',');
      }
      Json.append(sb, event.getField(i));
    }
    sb.append(']');
    events.inc();
    if (++counts[target] >= maxEvents) {
      flush(target);
    } else if (!timerSet) {
      timerSet = true;
      long now = getProcessingTimeService().getCurrentProcessingTime();
      getProcessingTimeService().registerTimer(now + maxDelayMs, this);
    }
  }

  @Override
  public void processWatermark(Watermark mark) throws Exception {
    flushAll(); // events held here are older than what the watermark says has passed
    super.processWatermark(mark);
  }

  @Override
  public void onProcessingTime(long time) throws Exception {
    timerSet = false;
    flushAll();
  }

  @Override
  public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
    flushAll(); // nothing buffered may cross a barrier: that is what makes this operator stateless
    emitCommitMarkers(checkpointId);
    super.prepareSnapshotPreBarrier(checkpointId);
  }

  @Override
  public void endInput() throws Exception {
    // a bounded source ended: hand over what is held and let pending profiles be committed
    flushAll();
    emitCommitMarkers(Long.MAX_VALUE);
  }

  @Override
  public void finish() throws Exception {
    flushAll();
    super.finish();
  }

  private void emitCommitMarkers(long checkpointId) {
    String marker = commitMarker(checkpointId);
    for (int i = 0; i < parallelism; i++) {
      output.collect(new StreamRecord<>(Row.of(routeKeys[i], Row.of(marker))));
    }
  }

  private void flushAll() {
    for (int i = 0; i < parallelism; i++) {
      if (counts[i] > 0) {
        flush(i);
      }
    }
  }

  private void flush(int target) {
    StringBuilder sb = payloads[target];
    sb.append(']');
    output.collect(new StreamRecord<>(Row.of(routeKeys[target], Row.of(sb.toString()))));
    batches.inc();
    batchSize.update(counts[target]);
    sb.setLength(0);
    counts[target] = 0;
  }
}
