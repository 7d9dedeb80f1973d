package io.modelgate.gateway.server;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class ConnectionSettingsTest {
  @Test
  void theDefaultCount_isAQuarterOfTheOpenFileLimit_atMostTenThousand_atLeastSixteen() {
    assertThat(ConnectionSettings.defaultMaxConnections(1_048_576)).isEqualTo(10_000);
    assertThat(ConnectionSettings.defaultMaxConnections(40_000)).isEqualTo(10_000);
    assertThat(ConnectionSettings.defaultMaxConnections(20_000)).isEqualTo(5_000);
    assertThat(ConnectionSettings.defaultMaxConnections(1_024)).isEqualTo(256);
    assertThat(ConnectionSettings.defaultMaxConnections(20)).isEqualTo(16);
    assertThat(ConnectionSettings.defaultMaxConnections(-1)).isEqualTo(10_000);
  }

  @Test
  void thisProcessesOpenFileLimit_isRead() {
    // The JVM on Linux and macOS says; the tests run there.
    assertThat(ConnectionSettings.maxOpenFiles()).isPositive();
  }
}
