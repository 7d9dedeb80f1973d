package io.modelgate.gateway.config;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * How modelgate keeps and checks secrets it is shown (API keys, admin tokens): only their SHA-256,
 * written {@code sha256:<64 hex digits>}, compared in constant time.
 */
public final class Secrets {
  private Secrets() {}

  /** The SHA-256 of {@code secret}'s UTF-8 bytes. */
  public static byte[] sha256(String secret) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(secret.getBytes(StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is part of every Java runtime", e);
    }
  }

  /** {@code secret}'s hash as the files write it: {@code sha256:<hex>}. */
  public static String hash(String secret) {
    return "sha256:" + HexFormat.of().formatHex(sha256(secret));
  }

  /**
   * The bytes of a hash as the files write it.
   *
   * @throws WatchedFile.InvalidFileException naming {@code where} when it is not {@code sha256:<64 hex digits>}
   */
  public static byte[] parseHash(String text, String where) throws WatchedFile.InvalidFileException {
    if (text == null || !text.matches("sha256:[0-9a-fA-F]{64}")) {
      throw new WatchedFile.InvalidFileException(where + ": expected sha256:<64 hex digits> (the hash, never the secret: "
          + "modelgate callers new-key makes both)");
    }
    return HexFormat.of().parseHex(text.substring("sha256:".length()));
  }

  /** Whether {@code hash} is one of {@code known}; every one is compared, in constant time each. */
  public static boolean matchesAny(byte[] hash, Iterable<byte[]> known) {
    boolean found = false;
    for (byte[] candidate : known) {
      found |= MessageDigest.isEqual(hash, candidate);
    }
    return found;
  }
}
