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
    if (id.isTest()) {
      skipped.incrementAndGet();
    } else if (plan != null) {
      skipped.addAndGet((int) plan.getDescendants(id).stream().filter(TestIdentifier::isTest).count());
    }
  }

  @Override
  public void executionFinished(TestIdentifier id, TestExecutionResult result) {
    if (!id.isTest()) {
      return;
    }
    run.incrementAndGet();
    if (result.getStatus() == TestExecutionResult.Status.FAILED) {
      Throwable t = result.getThrowable().orElse(null);
      (t instanceof AssertionError ? failures : errors).incrementAndGet();
    }
  }

  @Override
  public void testPlanExecutionFinished(TestPlan testPlan) {
    if (run.get() + skipped.get() > 0 && mavenIsQuiet()) {
      System.out.printf("Tests run: %d, Failures: %d, Errors: %d, Skipped: %d%n",
          run.get() + skipped.get(), failures.get(), errors.get(), skipped.get());
    }
  }
}
