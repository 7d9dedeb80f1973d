package io.modelgate.gateway.admin;

import io.modelgate.gateway.config.WatchedFile;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;

/**
 * The admin API's tokens, each with a name and a role: the server's own token (generated or
 * {@code --admin-token-file}: the role {@code admin}, named {@code admin}) and those of the tokens
 * file ({@code --admin-tokens}, YAML), kept as SHA-256 hashes:
 *
 * <pre>
 * tokens:
 *   grafana: {hash: sha256:9f86d0..., role: viewer}
 *   deploy-bot: {hash: sha256:..., role: operator}
 * </pre>
 *
 * <p>Immutable; {@link WatchedFile} reads the file again when it changes.
 */
public final class AdminTokens {
  /** What a token may do: each role may do what the ones before it may. */
  public enum Role {
    /** Read: models, routes, statistics, rollouts, drift, usage. */
    VIEWER,
    /** Change: routes, rollouts, loads and unloads, validation, drift references. */
    OPERATOR,
    /** Everything, including who has access. */
    ADMIN;

    public String configName() {
      return name().toLowerCase(Locale.ROOT);
    }

    public boolean allows(Role needed) {
      return compareTo(needed) >= 0;
    }

    /** The role of this configuration name ({@code viewer}, {@code operator}, {@code admin}), or null. */
    public static Role named(String name) {
      for (Role role : values()) {
        if (role.configName().equals(name)) {
          return role;
        }
      }
      return null;
    }
  }

  /** A token: its name (in the audit log), the hash of its secret, its role. */
  public record Token(String name, byte[] hash, Role role) {}

  private final List<Token> tokens;

  private AdminTokens(List<Token> tokens) {
    this.tokens = List.copyOf(tokens);
  }

  /** Only the server's own token, as {@code admin}. */
  public static AdminTokens primary(String secret) {
    return new AdminTokens(List.of(new Token("admin", io.modelgate.gateway.config.Secrets.sha256(secret), Role.ADMIN)));
  }

  /** The server's own token and those of {@code file}. */
  public static AdminTokens read(String primarySecret, Path file) throws IOException, WatchedFile.InvalidFileException {
    Object document;
    try (Reader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      document = new Yaml(new SafeConstructor(new LoaderOptions())).load(reader);
    } catch (org.yaml.snakeyaml.error.YAMLException e) {
      throw new WatchedFile.InvalidFileException("cannot be read as YAML: " + e.getMessage());
    }
    if (!(document instanceof Map<?, ?> map) || !(map.get("tokens") instanceof Map<?, ?> listed)) {
      throw new WatchedFile.InvalidFileException("expected a mapping 'tokens' of token names to {hash, role}");
    }
    for (Object key : map.keySet()) {
      if (!"tokens".equals(key)) {
        throw new WatchedFile.InvalidFileException(key + ": unknown key (expected: tokens)");
      }
    }
    List<Token> tokens = new ArrayList<>(primary(primarySecret).tokens);
    for (Map.Entry<?, ?> entry : listed.entrySet()) {
      String name = String.valueOf(entry.getKey());
      if (name.equals("admin")) {
        throw new WatchedFile.InvalidFileException("tokens.admin: the name of the server's own token (choose another)");
      }
      if (!(entry.getValue() instanceof Map<?, ?> fields)) {
        throw new WatchedFile.InvalidFileException("tokens." + name + ": expected {hash: sha256:<hex>, role: viewer|operator|admin}");
      }
      for (Object key : fields.keySet()) {
        if (!Set.of("hash", "role").contains(String.valueOf(key))) {
          throw new WatchedFile.InvalidFileException("tokens." + name + "." + key + ": unknown key (expected one of: [hash, role])");
        }
      }
      byte[] hash = io.modelgate.gateway.config.Secrets.parseHash(String.valueOf(fields.get("hash")), "tokens." + name + ".hash");
      Role role = null;
      for (Role r : Role.values()) {
        if (r.configName().equals(String.valueOf(fields.get("role")))) {
          role = r;
        }
      }
      if (role == null) {
        throw new WatchedFile.InvalidFileException("tokens." + name + ".role: " + fields.get("role") + " (expected: viewer, operator or admin)");
      }
      tokens.add(new Token(name, hash, role));
    }
    return new AdminTokens(tokens);
  }

  /** These tokens and {@code more} (the admin API's), as one set. */
  public AdminTokens with(List<Token> more) {
    List<Token> all = new ArrayList<>(tokens);
    all.addAll(more);
    return new AdminTokens(all);
  }

  /** The token whose secret is {@code presented}, or null; every hash is compared, in constant time each. */
  public Token find(String presented) {
    byte[] hash = io.modelgate.gateway.config.Secrets.sha256(presented);
    Token found = null;
    for (Token token : tokens) {
      if (io.modelgate.gateway.config.Secrets.matchesAny(hash, List.of(token.hash()))) {
        found = token;
      }
    }
    return found;
  }

  /** Names and roles, for {@code admin access}; never a hash. */
  public List<Token> tokens() {
    return tokens;
  }

  @Override
  public String toString() {
    TreeSet<String> names = new TreeSet<>();
    for (Token token : tokens) {
      names.add(token.name() + " (" + token.role().configName() + ")");
    }
    return tokens.size() + " tokens: " + names;
  }
}
