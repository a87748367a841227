package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.apache.flink.api.common.typeutils.base.StringSerializer;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.runtime.execution.SuppressRestartsException;
import org.apache.flink.runtime.jobgraph.OperatorID;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.streaming.api.operators.ProcessOperator;
import org.apache.flink.streaming.util.AbstractStreamOperatorTestHarness;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.util.Collector;
import org.apache.flink.util.ExceptionUtils;
import org.junit.jupiter.api.Test;

/** Real operator state through Flink's test harness: snapshot, then restore into a new operator. */
class StateGuardTest {
  // Shaped like flink_jobs.state_guard.fingerprint(), but the guard treats it as an opaque string,
  // so the test does not depend on what the job puts into it.
  private static final String FP = "python.execution-mode=thread;profile-state=v3;max-parallelism=128";
  private static final String OTHER = "python.execution-mode=process;profile-state=v3;max-parallelism=128";

  /** One operator id for every harness: a restore matches state to operators by id. */
  private static final OperatorID GUARD_ID = new OperatorID();

  private static OneInputStreamOperatorTestHarness<String, String> harness(
      ProcessFunction<String, String> fn, int maxParallelism, int parallelism, int subtask) throws Exception {
    return new OneInputStreamOperatorTestHarness<>(
        new ProcessOperator<>(fn), maxParallelism, parallelism, subtask, StringSerializer.INSTANCE, GUARD_ID);
  }

  private static OneInputStreamOperatorTestHarness<String, String> guard(String fingerprint) throws Exception {
    return harness(new StateGuard<>(fingerprint), 128, 1, 0);
  }

  /** Runs a guard from scratch (or from restored), passes one element, returns its snapshot. */
  private static OperatorSubtaskState runAndSnapshot(String fingerprint, OperatorSubtaskState restored)
      throws Exception {
    try (OneInputStreamOperatorTestHarness<String, String> h = guard(fingerprint)) {
      if (restored != null) {
        h.initializeState(restored);
      }
      h.open();
      h.processElement("e1", 10L);
      assertEquals(List.of("e1"), h.extractOutputValues(), "the guard must pass elements through unchanged");
      return h.snapshot(1L, 100L);
    }
  }

  private static SuppressRestartsException restoreFails(String fingerprint, OperatorSubtaskState snapshot)
      throws Exception {
    try (OneInputStreamOperatorTestHarness<String, String> h = guard(fingerprint)) {
      Exception e = assertThrows(Exception.class, () -> {
        h.initializeState(snapshot);
        h.open();
      });
      // SuppressRestartsException is what keeps Flink from restarting into the same failure.
      return ExceptionUtils.findThrowable(e, SuppressRestartsException.class)
          .orElseThrow(() -> new AssertionError("expected a SuppressRestartsException, got " + e, e));
    }
  }

  @Test
  void freshStartPassesAndSnapshots() throws Exception {
    assertNotNull(runAndSnapshot(FP, null));
  }

  @Test
  void restoreWithTheSameFingerprintPasses() throws Exception {
    OperatorSubtaskState first = runAndSnapshot(FP, null);
    OperatorSubtaskState second = runAndSnapshot(FP, first);
    // and the re-snapshotted state still restores: the fingerprint is carried forward
    assertNotNull(runAndSnapshot(FP, second));
  }

  @Test
  void restoreWithAnotherFingerprintFailsForGoodWithBothNamed() throws Exception {
    OperatorSubtaskState snapshot = runAndSnapshot(FP, null);
    SuppressRestartsException e = restoreFails(OTHER, snapshot);
    String msg = ExceptionUtils.stringifyException(e);
    assertTrue(msg.contains("incompatible state"), msg);
    assertTrue(msg.contains(FP), "names the snapshot's fingerprint: " + msg);
    assertTrue(msg.contains(OTHER), "names the running job's fingerprint: " + msg);
  }

  @Test
  void fingerprintsDifferingOnlyInOneSettingAreNotCompatible() throws Exception {
    // e.g. a changed max parallelism: every other part of the fingerprint equal
    OperatorSubtaskState snapshot = runAndSnapshot(FP, null);
    restoreFails(FP.replace("max-parallelism=128", "max-parallelism=256"), snapshot);
  }

  @Test
  void snapshotWithoutFingerprintIsAcceptedAndTheNextSnapshotCarriesOne() throws Exception {
    // a job from before the guard: same operator id, no state of its own
    OperatorSubtaskState legacy;
    try (OneInputStreamOperatorTestHarness<String, String> h = harness(new PassThrough(), 128, 1, 0)) {
      h.open();
      legacy = h.snapshot(1L, 100L);
    }
    OperatorSubtaskState guarded = runAndSnapshot(FP, legacy);
    restoreFails(OTHER, guarded);
  }

  @Test
  void rescaledRestoreSeesEveryFingerprintAndAcceptsCopiesOfItsOwn() throws Exception {
    // union state: after rescaling 2 -> 3 subtasks each one gets both old subtasks' copies
    OperatorSubtaskState merged = snapshotOfTwoSubtasks(FP, FP);
    for (int subtask = 0; subtask < 3; subtask++) {
      OperatorSubtaskState part = AbstractStreamOperatorTestHarness.repartitionOperatorState(
          merged, 128, 2, 3, subtask);
      try (OneInputStreamOperatorTestHarness<String, String> h = harness(new StateGuard<>(FP), 128, 3, subtask)) {
        h.initializeState(part);
        h.open();
        h.processElement("e" + subtask, 10L);
        assertEquals(List.of("e" + subtask), h.extractOutputValues());
      }
    }
  }

  @Test
  void rescaledRestoreOfAMixedSnapshotFailsOnEverySubtask() throws Exception {
    OperatorSubtaskState merged = snapshotOfTwoSubtasks(FP, OTHER);
    for (int subtask = 0; subtask < 2; subtask++) {
      OperatorSubtaskState part = AbstractStreamOperatorTestHarness.repartitionOperatorState(
          merged, 128, 2, 2, subtask);
      try (OneInputStreamOperatorTestHarness<String, String> h = harness(new StateGuard<>(FP), 128, 2, subtask)) {
        Exception e = assertThrows(Exception.class, () -> {
          h.initializeState(part);
          h.open();
        });
        assertTrue(ExceptionUtils.findThrowable(e, SuppressRestartsException.class).isPresent(), e::toString);
      }
    }
  }

  private static OperatorSubtaskState snapshotOfTwoSubtasks(String fp0, String fp1) throws Exception {
    OperatorSubtaskState[] parts = new OperatorSubtaskState[2];
    String[] fps = {fp0, fp1};
    for (int i = 0; i < 2; i++) {
      try (OneInputStreamOperatorTestHarness<String, String> h = harness(new StateGuard<>(fps[i]), 128, 2, i)) {
        h.open();
        parts[i] = h.snapshot(1L, 100L);
      }
    }
    return AbstractStreamOperatorTestHarness.repackageState(parts);
  }

  /** An operator of the same id that stores no state: a snapshot from before the guard. */
  private static final class PassThrough extends ProcessFunction<String, String> {
    private static final long serialVersionUID = 1L;

    @Override
    public void processElement(String value, Context ctx, Collector<String> out) {
      out.collect(value);
    }
  }
}
