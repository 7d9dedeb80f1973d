package io.modelgate.gateway.server;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Properties;

/** The version modelgate was built as, from a resource the build writes. */
public final class ServerVersion {
  private static final String VERSION = load();

  private ServerVersion() {}

  public static String current() {
    return VERSION;
  }

  private static String load() {
    try (InputStream in = ServerVersion.class.getResourceAsStream("/io/modelgate/gateway/modelgate.properties")) {
      if (in == null) {
        return "unknown";
      }
      Properties properties = new Properties();
      properties.load(in);
      return properties.getProperty("version", "unknown");
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
