package io.modelgate.gateway.server;

import java.util.Properties;

/**
 * Netty settings a modelgate process starts with where the operator has not set them.
 *
 * <p>Buffer leak detection: Netty tracks one buffer in {@value #NETTY_SAMPLING_INTERVAL} (its
 * {@code SIMPLE} level) and records a stack trace for each one it tracks. At the gateway's rates
 * that is several traces a millisecond, walked from the event loop's deep stacks: profiled under
 * load (the demo's cnn_mnist, 64 calls in flight) it was 4.6% of the event loop's CPU and 1.7% of
 * the whole server's. modelgate keeps detection on and tracks one buffer in {@value
 * #LEAK_SAMPLING_INTERVAL}: a leak on a path that every request takes is still reported within
 * seconds at a few thousand requests a second; one on a rare path may take much longer to show.
 * An operator chasing a leak sets {@code -Dio.netty.leakDetection.level=paranoid} (every buffer,
 * with its access records), which this leaves alone, as it leaves any sampling interval set.
 *
 * <p>Netty reads these settings once, when its buffer classes load: {@link #apply} must run before
 * any Netty class is used, first thing in a {@code main}.
 */
public final class NettyDefaults {
  /** Buffers per tracked buffer in a modelgate process. */
  public static final int LEAK_SAMPLING_INTERVAL = 4096;

  /** Netty's own default, for the record. */
  static final int NETTY_SAMPLING_INTERVAL = 128;

  static final String SAMPLING_INTERVAL = "io.netty.leakDetection.samplingInterval";
  static final String LEVEL = "io.netty.leakDetection.level";
  static final String LEVEL_OLD = "io.netty.leakDetectionLevel";

  private NettyDefaults() {}

  /** Sets this process's defaults in its system properties. Call before Netty loads. */
  public static void apply() {
    apply(System.getProperties());
  }

  /** Sets the defaults in {@code properties} where neither the interval nor a level is set. */
  static void apply(Properties properties) {
    if (properties.getProperty(SAMPLING_INTERVAL) == null
        && properties.getProperty(LEVEL) == null
        && properties.getProperty(LEVEL_OLD) == null) {
      properties.setProperty(SAMPLING_INTERVAL, Integer.toString(LEAK_SAMPLING_INTERVAL));
    }
  }
}
