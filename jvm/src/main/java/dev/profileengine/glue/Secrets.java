package dev.profileengine.glue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Map;

/**
 * Resolves a secret reference the way flink_jobs/security.py {@code read_secret} does, so one
 * password file serves the Python tools and the JVM sink alike. No message ever holds the value.
 */
final class Secrets {
  static final String ENV_PREFIX = "env:";

  private Secrets() {}

  /** Fails on a reference that can never resolve, when the job is built rather than in every task. */
  static void checkReference(String ref) {
    if (ref.startsWith(ENV_PREFIX)) {
      if (ref.length() == ENV_PREFIX.length()) {
        throw new IllegalArgumentException("empty environment variable name in the password reference");
      }
    } else if (!Paths.get(ref).isAbsolute()) {
      // the TaskManager's working directory is not the repository root that security.py resolves against
      throw new IllegalArgumentException("the password file path must be absolute: " + ref);
    }
  }

  static String resolve(String ref) {
    return resolve(ref, System.getenv());
  }

  static String resolve(String ref, Map<String, String> env) {
    checkReference(ref);
    if (ref.startsWith(ENV_PREFIX)) {
      String name = ref.substring(ENV_PREFIX.length());
      String value = env.get(name);
      if (value == null || value.isEmpty()) {
        throw new IllegalStateException("environment variable " + name + " is not set or empty");
      }
      return value;
    }
    Path path = Paths.get(ref);
    String value;
    try {
      value = new String(Files.readAllBytes(path), StandardCharsets.UTF_8);
    } catch (IOException e) {
      // the exception's message names the path only; its cause carries no content
      throw new IllegalStateException("cannot read secret file " + path + ": " + e.getClass().getSimpleName());
    }
    if (value.isEmpty()) {
      throw new IllegalStateException("secret file " + path + " is empty");
    }
    if (!value.equals(value.strip())) {
      // Kafka's DirectoryConfigProvider reads the same file verbatim: a newline would be part of it there
      throw new IllegalStateException(
          "secret file " + path + " has leading/trailing whitespace (write it with printf '%s')");
    }
    return value;
  }
}
