package dev.profileengine.glue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.Serializable;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

/**
 * Reads writer schemas by id from a schema registry's Confluent-compatible REST API
 * ({@code GET <base>/schemas/ids/<id>}: Confluent Schema Registry, or Apicurio's /apis/ccompat/v7).
 *
 * <p>Only a definite "no such schema" (HTTP 404 with Confluent's error code 40403) is an answer about
 * the record; everything else (refused connection, timeout, 5xx, a 404 without that code, i.e. a wrong
 * URL path) is an outage and ends in an IOException after {@link #TRIES} tries, so that valid events
 * are never dead-lettered because the registry was down or misconfigured.
 */
public class SchemaRegistryClient implements Serializable {
  private static final long serialVersionUID = 1L;
  static final int TRIES = 3;
  /** Confluent's error code "schema not found" (Apicurio's ccompat API sends the same). */
  static final int SCHEMA_NOT_FOUND = 40403;
  private static final ObjectMapper JSON = new ObjectMapper();

  /** A registry's answer for one id: the schema text and its type (AVRO when the registry omits it). */
  public record WriterSchema(String text, String type) {}

  private final String baseUrl;
  private final int timeoutMs;
  private final long backoffMs;
  private transient HttpClient http;

  public SchemaRegistryClient(String baseUrl, int timeoutMs) {
    this(baseUrl, timeoutMs, 200);
  }

  SchemaRegistryClient(String baseUrl, int timeoutMs, long backoffMs) {
    this.baseUrl = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
    this.timeoutMs = timeoutMs;
    this.backoffMs = backoffMs;
  }

  public String baseUrl() {
    return baseUrl;
  }

  /** The writer schema of {@code id}, or null when the registry says it has no such id. */
  public WriterSchema fetch(int id) throws IOException {
    if (http == null) {
      http = HttpClient.newBuilder().connectTimeout(Duration.ofMillis(timeoutMs)).build();
    }
    URI uri = URI.create(baseUrl + "/schemas/ids/" + Integer.toUnsignedString(id));
    HttpRequest req = HttpRequest.newBuilder(uri).timeout(Duration.ofMillis(timeoutMs))
        .header("Accept", "application/vnd.schemaregistry.v1+json, application/json").GET().build();
    String last = "";
    for (int attempt = 1; attempt <= TRIES; attempt++) {
      try {
        HttpResponse<String> resp = http.send(req, HttpResponse.BodyHandlers.ofString());
        if (resp.statusCode() == 200) {
          return parse(resp.body(), uri);
        }
        if (resp.statusCode() == 404 && errorCode(resp.body()) == SCHEMA_NOT_FOUND) {
          return null;
        }
        last = "HTTP " + resp.statusCode() + ": " + abbreviate(resp.body());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted while asking " + uri);
      } catch (IOException e) {
        last = String.valueOf(e);
      }
      if (attempt < TRIES) {
        sleep(backoffMs << (attempt - 1));
      }
    }
    throw new IOException("schema registry did not answer " + uri + " after " + TRIES + " tries (timeout "
        + timeoutMs + " ms each): " + last);
  }

  private static WriterSchema parse(String body, URI uri) throws IOException {
    JsonNode node = JSON.readTree(body);
    JsonNode schema = node == null ? null : node.get("schema");
    if (schema == null || !schema.isTextual()) {
      throw new IOException("unexpected answer from " + uri + " (no \"schema\" string): " + abbreviate(body));
    }
    JsonNode type = node.get("schemaType");
    return new WriterSchema(schema.asText(), type == null || type.isNull() ? "AVRO" : type.asText());
  }

  private static int errorCode(String body) {
    try {
      JsonNode node = JSON.readTree(body);
      JsonNode code = node == null ? null : node.get("error_code");
      return code != null && code.canConvertToInt() ? code.asInt() : -1;
    } catch (IOException e) {
      return -1; // not JSON: not a registry's answer
    }
  }

  private static String abbreviate(String s) {
    return s == null ? "" : s.length() <= 200 ? s : s.substring(0, 200) + "...";
  }

  private static void sleep(long ms) throws InterruptedIOException {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new InterruptedIOException("interrupted while waiting to retry the schema registry");
    }
  }
}
