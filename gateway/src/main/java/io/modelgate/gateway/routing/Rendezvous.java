package io.modelgate.gateway.routing;

/**
 * Weighted rendezvous (highest random weight) hashing: a key goes to the entry with the highest
 * {@code weight / -ln(hash(key, entry))}. Each entry wins a share of keys equal to its share of the
 * weight, and when weights change only the keys that must move do. Immutable and thread-safe.
 */
final class Rendezvous {
  private final long[] seeds;
  private final double[] weights;

  /** @param ids stable identities of the entries (version numbers) */
  Rendezvous(long[] ids, long[] weights) {
    this.seeds = new long[ids.length];
    this.weights = new double[ids.length];
    for (int i = 0; i < ids.length; i++) {
      seeds[i] = mix(ids[i] * 0x9E3779B97F4A7C15L + 0x632BE59BD9B4E019L);
      this.weights[i] = weights[i];
    }
  }

  int pick(String key) {
    long keyHash = hash(key);
    int best = -1;
    double bestScore = -1;
    for (int i = 0; i < seeds.length; i++) {
      if (weights[i] <= 0) {
        continue;
      }
      // A uniform value in (0, 1) from the top 53 bits; never 0.
      double u = ((mix(keyHash ^ seeds[i]) >>> 11) + 0.5) * 0x1.0p-53;
      double score = weights[i] / -Math.log(u);
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    return best;
  }

  /** FNV-1a over the key's UTF-16 units, then mixed. */
  static long hash(String key) {
    long h = 0xcbf29ce484222325L;
    for (int i = 0; i < key.length(); i++) {
      h ^= key.charAt(i);
      h *= 0x100000001b3L;
    }
    return mix(h);
  }

  /** MurmurHash3's 64-bit finalizer. */
  static long mix(long h) {
    h ^= h >>> 33;
    h *= 0xff51afd7ed558ccdL;
    h ^= h >>> 33;
    h *= 0xc4ceb9fe1a85ec53L;
    h ^= h >>> 33;
    return h;
  }
}
