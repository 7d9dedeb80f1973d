package io.modelgate.gateway.testing;

import java.io.IOException;
import java.net.HttpURLConnection;
import java.net.URI;
import java.nio.charset.StandardCharsets;

/** Plain HTTP GETs against a local server, as a probe or a scraper makes them. */
public final class HttpProbe {
  private HttpProbe() {}

  /** Whether {@code url} answers 200 within 300 ms (false when nothing listens yet). */
  public static boolean ok(String url) {
    try {
      HttpURLConnection c = (HttpURLConnection) URI.create(url).toURL().openConnection();
      c.setConnectTimeout(300);
      c.setReadTimeout(300);
      return c.getResponseCode() == 200;
    } catch (IOException e) {
      return false;
    }
  }

  /** Whether {@code http://127.0.0.1:PORT/readyz} answers 200. */
  public static boolean ready(int port) {
    return ok("http://127.0.0.1:" + port + "/readyz");
  }

  /** The body of {@code http://127.0.0.1:PORT PATH}. */
  public static String get(int port, String path) throws IOException {
    HttpURLConnection c = (HttpURLConnection) URI.create("http://127.0.0.1:" + port + path).toURL().openConnection();
    return new String(c.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
  }
}
