package dev.profileengine.glue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.Serializable;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * Reads writer schemas by id from a schema registry's Confluent-compatible REST API
 * ({@code GET <base>/schemas/ids/<id>}: Confluent Schema Registry, or Apicurio's /apis/ccompat/v7), and
 * registers the schemas of the job's own Confluent-format output ({@code POST <base>/subjects/<s>/versions}).
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
    URI uri = URI.create(baseUrl + "/schemas/ids/" + Integer.toUnsignedString(id));
    HttpResponse<String> resp = send(request(uri).GET().build(), true);
    return resp.statusCode() == 200 ? parse(resp.body(), uri) : null;
  }

  /**
   * Registers {@code schemaJson} (Avro) under {@code subject}, or finds it registered already; returns
   * its id. A refusal (e.g. 409: incompatible with the subject's rules) is an IOException too.
   */
  public int register(String subject, String schemaJson) throws IOException {
    URI uri = URI.create(baseUrl + "/subjects/" + URLEncoder.encode(subject, StandardCharsets.UTF_8) + "/versions");
    String body = JSON.createObjectNode().put("schema", schemaJson).toString();
    HttpResponse<String> resp = send(request(uri).header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .POST(HttpRequest.BodyPublishers.ofString(body)).build(), false);
    if (resp.statusCode() != 200) {
      throw new IOException("schema registry refused " + subject + " at " + uri + ": HTTP " + resp.statusCode()
          + ": " + abbreviate(resp.body()));
    }
    JsonNode id = JSON.readTree(resp.body()).get("id");
    if (id == null || !id.canConvertToInt()) {
      throw new IOException("unexpected answer from " + uri + " (no \"id\"): " + abbreviate(resp.body()));
    }
    return id.asInt();
  }

  private HttpRequest.Builder request(URI uri) {
    return HttpRequest.newBuilder(uri).timeout(Duration.ofMillis(timeoutMs))
        .header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
  }

  /**
   * The registry's answer: 200, a 4xx other than a bare 404 when {@code notFoundIsAnswer} is false, or a
   * 404 with the registry's "not found" code when it is true. Anything else is retried, then thrown.
   */
  private HttpResponse<String> send(HttpRequest req, boolean notFoundIsAnswer) throws IOException {
    if (http == null) {
      http = HttpClient.newBuilder().connectTimeout(Duration.ofMillis(timeoutMs)).build();
    }
    URI uri = req.uri();
    String last = "";
    for (int attempt = 1; attempt <= TRIES; attempt++) {
      try {
        HttpResponse<String> resp = http.send(req, HttpResponse.BodyHandlers.ofString());
        int code = resp.statusCode();
        boolean registryNotFound = code == 404 && errorCode(resp.body()) == SCHEMA_NOT_FOUND;
        if (code == 200 || (notFoundIsAnswer ? registryNotFound : code >= 400 && code < 500 && code != 404
            && code != 408 && code != 429)) {
          return resp;
        }
        last = "HTTP " + code + ": " + abbreviate(resp.body());
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
