package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Properties;
import org.junit.jupiter.api.Test;

class NettyDefaultsTest {
  @Test
  void unsetProcess_tracksOneBufferInFourThousand() {
    Properties properties = new Properties();

    NettyDefaults.apply(properties);

    assertThat(properties.getProperty(NettyDefaults.SAMPLING_INTERVAL)).isEqualTo("4096");
    assertThat(NettyDefaults.LEAK_SAMPLING_INTERVAL).isGreaterThan(NettyDefaults.NETTY_SAMPLING_INTERVAL);
  }

  @Test
  void operatorsInterval_isKept() {
    Properties properties = new Properties();
    properties.setProperty(NettyDefaults.SAMPLING_INTERVAL, "1");

    NettyDefaults.apply(properties);

    assertThat(properties.getProperty(NettyDefaults.SAMPLING_INTERVAL)).isEqualTo("1");
  }

  @Test
  void operatorsLevel_leavesNettysSamplingAlone() {
    for (String level : new String[] {NettyDefaults.LEVEL, NettyDefaults.LEVEL_OLD}) {
      Properties properties = new Properties();
      properties.setProperty(level, "advanced");

      NettyDefaults.apply(properties);

      assertThat(properties.getProperty(NettyDefaults.SAMPLING_INTERVAL)).as(level).isNull();
      assertThat(properties.getProperty(level)).isEqualTo("advanced");
    }
  }
}
