package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.security.Security;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class BenchCliTest {
  private final String before = Security.getProperty("networkaddress.cache.ttl");

  @AfterEach
  void restore() {
    // A security property cannot be removed; "30" is the JVM's own default when none is set.
    Security.setProperty("networkaddress.cache.ttl", before == null ? "30" : before);
  }

  @Test
  void theAddressCache_keepsANameBriefly_unlessTheUserSaidOtherwise() {
    if (before == null && System.getProperty("sun.net.inetaddr.ttl") == null) {
      BenchCli.configureJvm();
      assertThat(Security.getProperty("networkaddress.cache.ttl")).isEqualTo(BenchCli.ADDRESS_CACHE_SECONDS);
    }
    Security.setProperty("networkaddress.cache.ttl", "7");
    BenchCli.configureJvm();
    assertThat(Security.getProperty("networkaddress.cache.ttl")).as("the user's setting wins").isEqualTo("7");
  }

  @Test
  void everyCommandsHelp_describesEachOption_itsDefault_andSplitsOnlyBetweenSentences() {
    picocli.CommandLine cli = new picocli.CommandLine(new BenchCli());
    assertThat(io.modelgate.gateway.testing.HelpText.undescribed(cli)).isEmpty();
    assertThat(io.modelgate.gateway.testing.HelpText.unmentionedDefaults(cli)).isEmpty();
    assertThat(io.modelgate.gateway.testing.HelpText.sentencesSplit(cli)).isEmpty();
  }
}
