package dev.profileengine.glue;

import java.util.concurrent.atomic.AtomicInteger;
import org.junit.platform.engine.TestExecutionResult;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;
import org.junit.platform.launcher.TestPlan;

/**
 * Prints Surefire's summary line when Maven runs with -q (as `make jars` does), which hides
 * Surefire's own: a build log then still says how many JVM tests ran. Without -q it stays silent,
 * so the line is not printed twice. Registered in META-INF/services; counts like Surefire (every
 * parameterized case is a test, an AssertionError is a failure, any other throwable an error).
 */
public class QuietBuildTestSummary implements TestExecutionListener {
  private final AtomicInteger run = new AtomicInteger();
  private final AtomicInteger failures = new AtomicInteger();
  private final AtomicInteger errors = new AtomicInteger();
  private final AtomicInteger skipped = new AtomicInteger();
  private final AtomicInteger notStarted = new AtomicInteger(); // @Disabled: never reach executionFinished
  private TestPlan plan;

  static boolean mavenIsQuiet() {
    // exported by Maven 3's bin/mvn; absent elsewhere (an IDE, Maven 4), where nothing is printed
    String args = System.getenv("MAVEN_CMD_LINE_ARGS");
    return args != null && isQuiet(args);
  }

  static boolean isQuiet(String mavenArgs) {
    for (String a : mavenArgs.trim().split("\\s+")) {
      // -q alone or among other single-letter flags (-qB); -D... defines a property instead
      if (a.equals("--quiet") || !a.startsWith("-D") && a.matches("-[A-Za-z]*q[A-Za-z]*")) {
        return true;
      }
    }
    return false;
  }

  @Override
  public void testPlanExecutionStarted(TestPlan testPlan) {
    plan = testPlan;
  }

  @Override
  public void executionSkipped(TestIdentifier id, String reason) {
    int n = id.isTest() ? 1
        : plan == null ? 0 : (int) plan.getDescendants(id).stream().filter(TestIdentifier::isTest).count();
    notStarted.addAndGet(n);
    skipped.addAndGet(n);
  }

  @Override
  public void executionFinished(TestIdentifier id, TestExecutionResult result) {
    if (!id.isTest()) {
      return;
    }
    run.incrementAndGet();
    if (result.getStatus() == TestExecutionResult.Status.ABORTED) {
      skipped.incrementAndGet(); // a failed assumption: Surefire counts it as run and skipped
    } else if (result.getStatus() == TestExecutionResult.Status.FAILED) {
      Throwable t = result.getThrowable().orElse(null);
      (t instanceof AssertionError ? failures : errors).incrementAndGet();
    }
  }

  @Override
  public void testPlanExecutionFinished(TestPlan testPlan) {
    int total = run.get() + notStarted.get();
    if (total > 0 && mavenIsQuiet()) {
      System.out.printf("Tests run: %d, Failures: %d, Errors: %d, Skipped: %d%n",
          total, failures.get(), errors.get(), skipped.get());
    }
  }
}
