package io.modelgate.gateway.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.gateway.testing.HelpText;
import org.junit.jupiter.api.Test;

/** Every command's help says what each of its options and parameters is for, and its defaults. */
class CliHelpTest {

  @Test
  void everyCommand_andEveryOptionAndParameter_hasADescription() {
    assertThat(HelpText.undescribed(ModelgateCli.commandLine())).isEmpty();
  }

  @Test
  void everyDefault_isSaidInTheHelp() {
    assertThat(HelpText.unmentionedDefaults(ModelgateCli.commandLine())).isEmpty();
  }

  @Test
  void descriptions_splitOnlyBetweenSentences() {
    assertThat(HelpText.sentencesSplit(ModelgateCli.commandLine())).isEmpty();
  }
}
