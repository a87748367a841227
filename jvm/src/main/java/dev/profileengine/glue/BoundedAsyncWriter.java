package dev.profileengine.glue;

import java.io.IOException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

/**
 * At most {@code maxInFlight} asynchronous requests at a time, each retried with exponential
 * backoff until it succeeds or its retries are spent. Knows nothing of Cassandra or Flink, so the
 * bound, the retries and the flush are tested with a fake {@link Executor}.
 *
 * <p>Threads: {@link #submit} and {@link #flush} are called by one thread (the sink's task
 * thread); completions arrive on the executor's threads and retries run on {@code scheduler}. A
 * request counts as in flight through its retries, so the bound also counts requests waiting for
 * a retry, and flush waits for them too.
 *
 * <p>The first request whose retries are spent (or whose error is not retryable) fails the
 * writer: every later submit and flush throws it. Nothing is dropped quietly: the job restarts
 * from its last checkpoint, and the writes are idempotent, so the replay is harmless.
 */
final class BoundedAsyncWriter<R> implements AutoCloseable {
  /** Starts one request. Must be thread-safe: retries call it from the scheduler thread. */
  interface Executor<R> {
    CompletionStage<?> execute(R request);

    /** False for errors that another attempt cannot fix (a rejected query, a bad value). */
    boolean isRetryable(Throwable error);
  }

  /** Outcome callbacks, called on completion threads: implementations must be thread-safe. */
  interface Listener {
    void succeeded(long latencyMicros);

    void retrying(Throwable error, int retry, long delayMs);

    void failed(Throwable error, int attempts);

    Listener NONE = new Listener() {
      @Override
      public void succeeded(long latencyMicros) {}

      @Override
      public void retrying(Throwable error, int retry, long delayMs) {}

      @Override
      public void failed(Throwable error, int attempts) {}
    };
  }

  private static final long POLL_NANOS = 50_000_000L;

  private final Executor<R> executor;
  private final Listener listener;
  private final ScheduledExecutorService scheduler;
  private final int maxInFlight;
  private final int resumeAt;
  private final int maxRetries;
  private final long baseDelayMs;
  private final long maxDelayMs;
  private final AtomicInteger inFlight = new AtomicInteger();
  private final AtomicReference<IOException> failure = new AtomicReference<>();
  /** The thread blocked in submit or flush, and the in-flight level that should wake it. */
  private volatile Thread waiter;
  private volatile int wakeAt;
  private volatile boolean closed;

  BoundedAsyncWriter(Executor<R> executor, Listener listener, ScheduledExecutorService scheduler,
      int maxInFlight, int maxRetries, long baseDelayMs, long maxDelayMs) {
    if (maxInFlight < 1 || maxRetries < 0 || baseDelayMs < 0 || maxDelayMs < baseDelayMs) {
      throw new IllegalArgumentException("bad bounds");
    }
    this.executor = executor;
    this.listener = listener;
    this.scheduler = scheduler;
    this.maxInFlight = maxInFlight;
    // A full writer resumes once a quarter of the bound is free, not at the first free slot: one
    // wake-up per completion doubled the task thread's CPU per row at maxInFlight 64 (jvm/README.md).
    this.resumeAt = maxInFlight - Math.max(1, maxInFlight / 4);
    this.maxRetries = maxRetries;
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
  }

  /** Starts the request; blocks while maxInFlight requests are pending (the sink's backpressure). */
  void submit(R request) throws IOException, InterruptedException {
    rethrow();
    if (inFlight.get() >= maxInFlight) {
      awaitAtMost(resumeAt);
    }
    inFlight.incrementAndGet();
    attempt(request, 0, System.nanoTime());
  }

  /** Returns once every submitted request has succeeded; throws if one has failed for good. */
  void flush() throws IOException, InterruptedException {
    awaitAtMost(0);
  }

  /** Requests started and not yet finished (including those waiting for a retry). */
  int inFlight() {
    return inFlight.get();
  }

  /** Parks the calling thread until at most {@code level} requests are in flight or one has failed. */
  private void awaitAtMost(int level) throws IOException, InterruptedException {
    while (inFlight.get() > level) {
      rethrow();
      wakeAt = level;
      waiter = Thread.currentThread();
      // checked again after publishing the waiter: a completion in between would not have woken us
      if (inFlight.get() > level && failure.get() == null) {
        // timed: a lost wake-up would cost a poll, never a hang
        LockSupport.parkNanos(this, POLL_NANOS);
      }
      waiter = null;
      if (Thread.interrupted()) {
        throw new InterruptedException();
      }
    }
    rethrow(); // the last completions may have been failures
  }

  private void release(boolean failed) {
    int n = inFlight.decrementAndGet();
    Thread w = waiter;
    if (w != null && (failed || n <= wakeAt)) {
      LockSupport.unpark(w);
    }
  }

  private void rethrow() throws IOException {
    IOException e = failure.get();
    if (e != null) {
      throw new IOException(e.getMessage(), e.getCause());
    }
  }

  private void attempt(R request, int retries, long startNanos) {
    CompletionStage<?> stage;
    try {
      stage = executor.execute(request);
    } catch (RuntimeException e) {
      stage = CompletableFuture.failedFuture(e);
    }
    stage.whenComplete((ok, error) -> {
      if (error == null) {
        // counted before the permit returns: once flush() returns, the metrics include its writes
        listener.succeeded((System.nanoTime() - startNanos) / 1000);
        release(false);
      } else {
        failedAttempt(request, retries, startNanos, unwrap(error));
      }
    });
  }

  private void failedAttempt(R request, int retries, long startNanos, Throwable error) {
    if (closed) {
      release(false);
      return;
    }
    // once the writer has failed, the job restarts anyway: retrying the others only delays it
    if (retries < maxRetries && failure.get() == null && executor.isRetryable(error)) {
      long delay = delayMs(retries + 1);
      listener.retrying(error, retries + 1, delay);
      try {
        scheduler.schedule(() -> attempt(request, retries + 1, startNanos), delay, TimeUnit.MILLISECONDS);
        return;
      } catch (RejectedExecutionException e) {
        error.addSuppressed(e); // closed meanwhile: fall through and fail
      }
    }
    int attempts = retries + 1;
    failure.compareAndSet(null, new IOException("Cassandra write failed after " + attempts + " attempt(s)"
        + (executor.isRetryable(error) ? "" : " (not retryable)") + ": " + error, error));
    listener.failed(error, attempts);
    release(true);
  }

  private long delayMs(int retry) {
    long exp = baseDelayMs << Math.min(retry - 1, 30);
    long capped = exp < 0 ? maxDelayMs : Math.min(maxDelayMs, exp);
    // jitter: retries of requests that failed together (one node went away) do not return together
    return (long) (capped * (0.8 + 0.4 * ThreadLocalRandom.current().nextDouble()));
  }

  private static Throwable unwrap(Throwable t) {
    while ((t instanceof CompletionException || t instanceof ExecutionException) && t.getCause() != null) {
      t = t.getCause();
    }
    return t;
  }

  /** Stops retries; requests still in flight complete into the void (the checkpoint is not done). */
  @Override
  public void close() {
    closed = true;
  }
}
