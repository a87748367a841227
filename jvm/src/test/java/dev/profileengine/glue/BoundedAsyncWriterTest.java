package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class BoundedAsyncWriterTest {
  private final ScheduledExecutorService scheduler = Executors.newSingleThreadScheduledExecutor();
  private final ScheduledExecutorService caller = Executors.newSingleThreadScheduledExecutor();
  private final Recorder events = new Recorder();

  @AfterEach
  void stop() {
    scheduler.shutdownNow();
    caller.shutdownNow();
  }

  /** Requests whose outcome the test decides: each attempt is a future held in {@code pending}. */
  static final class Fake implements BoundedAsyncWriter.Executor<String> {
    final List<String> attempts = new CopyOnWriteArrayList<>();
    final List<CompletableFuture<Void>> pending = new CopyOnWriteArrayList<>();
    Function<String, CompletableFuture<Void>> outcome = r -> {
      CompletableFuture<Void> f = new CompletableFuture<>();
      pending.add(f);
      return f;
    };

    @Override
    public CompletionStage<?> execute(String request) {
      attempts.add(request);
      return outcome.apply(request);
    }

    @Override
    public boolean isRetryable(Throwable error) {
      return !(error instanceof IllegalArgumentException);
    }
  }

  static final class Recorder implements BoundedAsyncWriter.Listener {
    final AtomicInteger ok = new AtomicInteger();
    final AtomicInteger retries = new AtomicInteger();
    final AtomicInteger failures = new AtomicInteger();
    final List<Long> delays = new CopyOnWriteArrayList<>();

    @Override
    public void succeeded(long latencyMicros) {
      ok.incrementAndGet();
    }

    @Override
    public void retrying(Throwable error, int retry, long delayMs) {
      retries.incrementAndGet();
      delays.add(delayMs);
    }

    @Override
    public void failed(Throwable error, int attempts) {
      failures.incrementAndGet();
    }
  }

  private BoundedAsyncWriter<String> writer(Fake fake, int maxInFlight, int maxRetries) {
    return new BoundedAsyncWriter<>(fake, events, scheduler, maxInFlight, maxRetries, 1, 4);
  }

  private static void assertBlocked(Future<?> f) throws Exception {
    assertThrows(TimeoutException.class, () -> f.get(300, TimeUnit.MILLISECONDS));
  }

  @Test
  void submitBlocksAtTheBoundUntilARequestCompletes() throws Exception {
    Fake fake = new Fake();
    BoundedAsyncWriter<String> w = writer(fake, 2, 0);
    w.submit("a");
    w.submit("b");
    assertEquals(2, w.inFlight());
    Future<?> third = caller.submit(() -> {
      w.submit("c");
      return null;
    });
    assertBlocked(third);
    assertEquals(List.of("a", "b"), fake.attempts);
    fake.pending.get(0).complete(null);
    third.get(5, TimeUnit.SECONDS);
    assertEquals(List.of("a", "b", "c"), fake.attempts);
    assertEquals(2, w.inFlight());
  }

  @Test
  void aFullWriterResumesOnceAQuarterOfTheBoundIsFree() throws Exception {
    Fake fake = new Fake();
    BoundedAsyncWriter<String> w = writer(fake, 8, 0);
    for (int i = 0; i < 8; i++) {
      w.submit("r" + i);
    }
    Future<?> ninth = caller.submit(() -> {
      w.submit("r8");
      return null;
    });
    assertBlocked(ninth); // full
    fake.pending.get(0).complete(null);
    assertBlocked(ninth); // 7 in flight: not yet
    fake.pending.get(1).complete(null);
    ninth.get(5, TimeUnit.SECONDS); // 6 = 8 - 8/4
    assertEquals(7, w.inFlight());
  }

  @Test
  void flushWaitsForEveryRequest() throws Exception {
    Fake fake = new Fake();
    BoundedAsyncWriter<String> w = writer(fake, 8, 0);
    w.submit("a");
    w.submit("b");
    Future<?> flush = caller.submit(() -> {
      w.flush();
      return null;
    });
    fake.pending.get(1).complete(null);
    assertBlocked(flush);
    fake.pending.get(0).complete(null);
    flush.get(5, TimeUnit.SECONDS);
    assertEquals(0, w.inFlight());
    assertEquals(2, events.ok.get());
    w.flush(); // nothing pending: returns at once, and may be called again
  }

  @Test
  void aFailedAttemptIsRetriedAndTheFlushSucceeds() throws Exception {
    Fake fake = new Fake();
    AtomicInteger calls = new AtomicInteger();
    fake.outcome = r -> calls.incrementAndGet() <= 2
        ? CompletableFuture.failedFuture(new RuntimeException("write timeout"))
        : CompletableFuture.completedFuture(null);
    BoundedAsyncWriter<String> w = writer(fake, 4, 3);
    w.submit("a");
    w.flush();
    assertEquals(List.of("a", "a", "a"), fake.attempts);
    assertEquals(2, events.retries.get());
    assertEquals(1, events.ok.get());
    assertEquals(0, events.failures.get());
  }

  @Test
  void exhaustedRetriesFailTheWriterForGood() throws Exception {
    Fake fake = new Fake();
    fake.outcome = r -> CompletableFuture.failedFuture(new RuntimeException("unavailable"));
    BoundedAsyncWriter<String> w = writer(fake, 4, 2);
    w.submit("a");
    IOException e = assertThrows(IOException.class, w::flush);
    assertTrue(e.getMessage().contains("after 3 attempt(s)"), e.getMessage());
    assertEquals("unavailable", e.getCause().getMessage());
    assertEquals(3, fake.attempts.size());
    assertEquals(1, events.failures.get());
    assertThrows(IOException.class, () -> w.submit("b"));
    assertThrows(IOException.class, w::flush);
    assertEquals(3, fake.attempts.size()); // b was never sent
  }

  @Test
  void aNonRetryableErrorFailsAtOnce() throws Exception {
    Fake fake = new Fake();
    fake.outcome = r -> CompletableFuture.failedFuture(new IllegalArgumentException("bad value"));
    BoundedAsyncWriter<String> w = writer(fake, 4, 5);
    w.submit("a");
    IOException e = assertThrows(IOException.class, w::flush);
    assertTrue(e.getMessage().contains("not retryable"), e.getMessage());
    assertEquals(1, fake.attempts.size());
    assertEquals(0, events.retries.get());
  }

  @Test
  void anExecutorThatThrowsCountsAsAFailedAttempt() throws Exception {
    Fake fake = new Fake();
    AtomicInteger calls = new AtomicInteger();
    fake.outcome = r -> {
      if (calls.incrementAndGet() == 1) {
        throw new IllegalStateException("no connection yet");
      }
      return CompletableFuture.completedFuture(null);
    };
    BoundedAsyncWriter<String> w = writer(fake, 4, 1);
    w.submit("a");
    w.flush();
    assertEquals(2, fake.attempts.size());
  }

  @Test
  void aRequestStaysInFlightWhileWaitingForItsRetry() throws Exception {
    Fake fake = new Fake();
    AtomicInteger calls = new AtomicInteger();
    CompletableFuture<Void> retried = new CompletableFuture<>();
    fake.outcome = r -> calls.incrementAndGet() == 1
        ? CompletableFuture.failedFuture(new RuntimeException("overloaded"))
        : retried;
    BoundedAsyncWriter<String> w = writer(fake, 1, 1);
    w.submit("a");
    Future<?> second = caller.submit(() -> {
      w.submit("b");
      return null;
    });
    assertBlocked(second);
    assertEquals(List.of("a", "a"), fake.attempts);
    retried.complete(null);
    second.get(5, TimeUnit.SECONDS);
  }

  @Test
  void aFailureWhileSubmitIsBlockedSurfacesInSubmit() throws Exception {
    Fake fake = new Fake();
    BoundedAsyncWriter<String> w = writer(fake, 1, 0);
    w.submit("a");
    Future<?> second = caller.submit(() -> {
      w.submit("b");
      return null;
    });
    assertBlocked(second);
    fake.pending.get(0).completeExceptionally(new RuntimeException("node down"));
    Exception e = assertThrows(Exception.class, () -> second.get(5, TimeUnit.SECONDS));
    assertTrue(e.getCause() instanceof IOException, e.toString());
    assertFalse(fake.attempts.contains("b"));
  }

  @Test
  void backoffDoublesUpToTheCapWithJitter() throws Exception {
    Fake fake = new Fake();
    fake.outcome = r -> CompletableFuture.failedFuture(new RuntimeException("timeout"));
    BoundedAsyncWriter<String> w = new BoundedAsyncWriter<>(fake, events, scheduler, 1, 4, 10, 30);
    w.submit("a");
    assertThrows(IOException.class, w::flush);
    long[] nominal = {10, 20, 30, 30};
    assertEquals(4, events.delays.size());
    for (int i = 0; i < nominal.length; i++) {
      long d = events.delays.get(i);
      assertTrue(d >= nominal[i] * 0.8 - 1 && d <= nominal[i] * 1.2, "retry " + (i + 1) + ": " + d);
    }
  }
}
