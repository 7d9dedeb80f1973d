package io.modelgate.gateway.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.HexFormat;

/**
 * Where the admin bearer token comes from: a file named on the command line, the environment
 * variable {@value #ENV}, or {@code <state-dir>/admin-token}, which is created with a random token
 * (readable by its owner only) when missing.
 */
record AdminToken(String value, String source) {
  static final String ENV = "MODELGATE_ADMIN_TOKEN";
  static final String FILE = "admin-token";

  /** The token the server checks. */
  static AdminToken resolve(Path file, Path stateDir) throws IOException {
    if (file != null) {
      return new AdminToken(read(file), "from " + file);
    }
    String env = System.getenv(ENV);
    if (env != null && !env.isBlank()) {
      return new AdminToken(env.strip(), "from $" + ENV);
    }
    Path generated = stateDir.resolve(FILE);
    if (!Files.exists(generated)) {
      byte[] random = new byte[24];
      new SecureRandom().nextBytes(random);
      try {
        Files.createFile(
            generated, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
      } catch (UnsupportedOperationException e) {
        Files.createFile(generated);
      } catch (FileAlreadyExistsException e) {
        return new AdminToken(read(generated), "in " + generated);
      }
      Files.writeString(generated, HexFormat.of().formatHex(random) + "\n", StandardCharsets.UTF_8);
      return new AdminToken(read(generated), "generated in " + generated);
    }
    return new AdminToken(read(generated), "in " + generated);
  }

  /** The token a client sends: a file named on the command line, the environment, or the default file. */
  static String forClient(Path file, Path stateDir) throws IOException {
    if (file != null) {
      return read(file);
    }
    String env = System.getenv(ENV);
    if (env != null && !env.isBlank()) {
      return env.strip();
    }
    Path fallback = stateDir.resolve(FILE);
    if (!Files.exists(fallback)) {
      throw new IOException(
          "no admin token: pass --token-file, set $" + ENV + ", or run where " + fallback + " exists");
    }
    return read(fallback);
  }

  private static String read(Path file) throws IOException {
    String token = Files.readString(file, StandardCharsets.UTF_8).strip();
    if (token.length() < 16) {
      throw new IOException("the admin token in " + file + " is shorter than 16 characters");
    }
    return token;
  }
}
