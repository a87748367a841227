package dev.profileengine.glue;

import java.util.Collections;
import java.util.TreeSet;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.execution.SuppressRestartsException;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.util.Collector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Pass-through operator that refuses to restore state written by an incompatible job.
 *
 * <p>Every checkpoint stores a fingerprint of how the job's keyed state is laid out (Python
 * execution mode and profile state version). A restore whose stored fingerprint differs from the
 * running job's fails the job for good (no restart loop), because the alternative is silent: a
 * thread-mode snapshot restored in process mode yields EMPTY Python keyed state with no error. A
 * snapshot without a fingerprint (taken before this guard existed) is accepted with a warning. */
public class StateGuard<T> extends ProcessFunction<T, T> implements CheckpointedFunction {
  private static final long serialVersionUID = 1L;
  private static final Logger LOG = LoggerFactory.getLogger(StateGuard.class);
  private final String fingerprint;
  private transient ListState<String> stored;

  public StateGuard(String fingerprint) {
    this.fingerprint = fingerprint;
  }

  @Override
  public void processElement(T value, Context ctx, Collector<T> out) {
    out.collect(value);
  }

  @Override
  public void initializeState(FunctionInitializationContext context) throws Exception {
    // union state: after rescaling every subtask sees every stored fingerprint
    stored = context.getOperatorStateStore()
        .getUnionListState(new ListStateDescriptor<>("state-fingerprint", Types.STRING));
    if (!context.isRestored()) {
      return;
    }
    TreeSet<String> found = new TreeSet<>();
    for (String s : stored.get()) {
      found.add(s);
    }
    if (found.isEmpty()) {
      LOG.warn("restored from a snapshot without a state fingerprint; cannot check that it fits '{}'",
          fingerprint);
    } else if (!found.equals(Collections.singleton(fingerprint))) {
      throw new SuppressRestartsException(new IllegalStateException(
          "incompatible state: the snapshot was written by a job with state fingerprint " + found
              + " but this job is '" + fingerprint + "'. Restoring would start from EMPTY or unreadable"
              + " profiles. Restore with the settings the snapshot was taken with, or migrate the state."));
    } else {
      LOG.info("state fingerprint '{}' matches the restored snapshot", fingerprint);
    }
  }

  @Override
  public void snapshotState(FunctionSnapshotContext context) throws Exception {
    stored.update(Collections.singletonList(fingerprint));
  }
}
