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
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Groups valid events into micro-batches per state bucket, so the keyed Python operator is called
 * once per batch instead of once per event (the per-call crossing into Python is the job's main
 * cost, see ARCHITECTURE.md).
 *
 * <p>Input: (user_id, event row). Output: (bucket, (payload)) where bucket = floorMod(hash(user_id),
 * buckets) and payload is a JSON array of [watermark, event fields in user_event.avsc order] per
 * event. Each event carries the watermark this operator had seen when the event arrived, which is
 * the watermark a per-event keyed operator would have used for its lateness and duplicate checks.
 *
 * <p>Stateless on purpose: a bucket is flushed when it holds maxEvents, after maxDelayMs of
 * processing time, before every checkpoint barrier (prepareSnapshotPreBarrier) and at end of input.
 * No event is ever buffered across a checkpoint, so exactly-once needs no state here.
 */
public class MicroBatcher extends AbstractStreamOperator<Row>
    implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {
  private static final long serialVersionUID = 1L;
  private final int buckets;
  private final int maxEvents;
  private final long maxDelayMs;

  private transient StringBuilder[] payloads;
  private transient int[] counts;
  private transient String[] keys;
  private transient long watermark;
  private transient boolean timerSet;
  private transient Counter batches;
  private transient Counter events;
  private transient Histogram batchSize;

  public MicroBatcher(int buckets, int maxEvents, long maxDelayMs) {
    if (buckets < 1 || maxEvents < 1 || maxDelayMs < 1) {
      throw new IllegalArgumentException("buckets, maxEvents and maxDelayMs must be positive");
    }
    this.buckets = buckets;
    this.maxEvents = maxEvents;
    this.maxDelayMs = maxDelayMs;
  }

  /** Type of the output: Row(f0 = bucket key, f1 = Row(payload)), the shape PyFlink keys by. */
  public static RowTypeInfo batchType() {
    RowTypeInfo payload = new RowTypeInfo(new TypeInformation<?>[] {Types.STRING}, new String[] {"payload"});
    return new RowTypeInfo(Types.STRING, payload);
  }

  /** The bucket (and Python state key) of a user: stable across runs, JVMs and parallelism. */
  public static int bucketOf(String userId, int buckets) {
    return Math.floorMod(userId.hashCode(), buckets);
  }

  @Override
  public void open() throws Exception {
    super.open();
    payloads = new StringBuilder[buckets];
    counts = new int[buckets];
    keys = new String[buckets];
    for (int b = 0; b < buckets; b++) {
      payloads[b] = new StringBuilder(4096);
      keys[b] = Integer.toString(b);
    }
    watermark = Long.MIN_VALUE;
    MetricGroup group = getRuntimeContext().getMetricGroup().addGroup("profile_engine");
    batches = group.counter("batches");
    events = group.counter("batched_events");
    batchSize = group.histogram("batch_size", new DescriptiveStatisticsHistogram(1000));
  }

  @Override
  public void processElement(StreamRecord<Row> element) throws Exception {
    Row keyed = element.getValue();
    Row event = (Row) keyed.getField(1);
    int b = bucketOf((String) keyed.getField(0), buckets);
    StringBuilder sb = payloads[b];
    sb.append(counts[b] == 0 ? '[' : ',').append('[').append(watermark);
    for (int i = 0; i < event.getArity(); i++) {
      sb.append(',');
      Json.append(sb, event.getField(i));
    }
    sb.append(']');
    events.inc();
    if (++counts[b] >= maxEvents) {
      flush(b);
    } else if (!timerSet) {
      timerSet = true;
      long now = getProcessingTimeService().getCurrentProcessingTime();
      getProcessingTimeService().registerTimer(now + maxDelayMs, this);
    }
  }

  @Override
  public void processWatermark(Watermark mark) throws Exception {
    watermark = mark.getTimestamp();
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
    super.prepareSnapshotPreBarrier(checkpointId);
  }

  @Override
  public void finish() throws Exception {
    flushAll();
    super.finish();
  }

  private void flushAll() {
    for (int b = 0; b < buckets; b++) {
      if (counts[b] > 0) {
        flush(b);
      }
    }
  }

  private void flush(int b) {
    StringBuilder sb = payloads[b];
    sb.append(']');
    output.collect(new StreamRecord<>(Row.of(keys[b], Row.of(sb.toString()))));
    batches.inc();
    batchSize.update(counts[b]);
    sb.setLength(0);
    counts[b] = 0;
  }
}
