package dev.profileengine.glue;

import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Delivers one control record (a new model, a popularity snapshot) to EVERY profile subtask, through
 * the same keyed channel as the micro-batches: one copy per route key of {@link UserKeys#routeKeys}.
 *
 * <p>Why not Flink broadcast state: the profile operator is a thread-mode Python keyed function,
 * and PyFlink's broadcast-connected functions do not expose the keyed state backend the operator
 * needs (see KeyedStateAccess). A control record in the batch channel is also ordered with the
 * batches of its sender: the profile subtask applies it between two batches, never inside one.
 *
 * <p>Run with parallelism 1: one sender means every profile subtask sees the control records in
 * the same order (a promote can never arrive before the publish it promotes). {@code parallelism}
 * and {@code maxParallelism} are the profile operator's, as for the batcher.
 *
 * <p>Input: Row(payload) where payload is a JSON object (the profile operator dispatches on its
 * single top-level key). Output: Row(route key, Row(payload)), {@link MicroBatcher#batchType()}.
 * Control records carry no event time: the operator drops incoming watermarks and emits the
 * final watermark once, so the union with the batches never holds back the event-time clock.
 */
public class ControlFanout extends AbstractStreamOperator<Row> implements OneInputStreamOperator<Row, Row> {
  private static final long serialVersionUID = 1L;
  private final int parallelism;
  private final int maxParallelism;
  private transient String[] routeKeys;
  private transient Counter records;

  public ControlFanout(int parallelism, int maxParallelism) {
    if (parallelism < 1 || maxParallelism < parallelism) {
      throw new IllegalArgumentException(
          "need 1 <= parallelism <= maxParallelism, got " + parallelism + " and " + maxParallelism);
    }
    this.parallelism = parallelism;
    this.maxParallelism = maxParallelism;
  }

  @Override
  public void open() throws Exception {
    super.open();
    routeKeys = UserKeys.routeKeys(maxParallelism, parallelism);
    records = getRuntimeContext().getMetricGroup().addGroup("profile_engine").counter("control_records");
    output.emitWatermark(new Watermark(Long.MAX_VALUE));
  }

  @Override
  public void processElement(StreamRecord<Row> element) {
    String payload = (String) element.getValue().getField(0);
    if (payload == null || !payload.startsWith("{")) {
      throw new IllegalArgumentException("a control record is a JSON object, got: " + payload);
    }
    for (String key : routeKeys) {
      output.collect(new StreamRecord<>(Row.of(key, Row.of(payload))));
    }
    records.inc();
  }

  @Override
  public void processWatermark(Watermark mark) {
    // dropped on purpose: see the class comment
  }
}
