package io.modelgate.gateway.testing;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Model.PositionalParamSpec;

/**
 * What a command line's help leaves unsaid, for the tests of each program's commands (modelgate,
 * modelgate-bench): each method walks a command and its subcommands and lists the places at fault,
 * empty when there are none.
 */
public final class HelpText {
  private HelpText() {}

  /** Commands, options and positional parameters without a description. */
  public static List<String> undescribed(CommandLine root) {
    List<String> found = new ArrayList<>();
    visit(root, cmd -> {
      CommandSpec spec = cmd.getCommandSpec();
      if (blank(spec.usageMessage().description()) && !spec.name().equals("help")) {
        found.add(spec.qualifiedName());
      }
      for (OptionSpec option : spec.options()) {
        if (blank(option.description())) {
          found.add(spec.qualifiedName() + " " + option.longestName());
        }
      }
      for (PositionalParamSpec parameter : spec.positionalParameters()) {
        if (blank(parameter.description())) {
          found.add(spec.qualifiedName() + " " + parameter.paramLabel());
        }
      }
    });
    return found;
  }

  /**
   * Options with a default value their description does not mention (neither {@code
   * ${DEFAULT-VALUE}}, nor "default", nor what leaving it out does).
   */
  public static List<String> unmentionedDefaults(CommandLine root) {
    List<String> found = new ArrayList<>();
    visit(root, cmd -> {
      for (OptionSpec option : cmd.getCommandSpec().options()) {
        String text = String.join(" ", option.description()).toLowerCase(java.util.Locale.ROOT);
        if (option.defaultValue() != null && !option.defaultValue().isEmpty() && !option.usageHelp()
            && !option.versionHelp() && !text.contains("${default-value}") && !text.contains("default")
            && !text.contains("left out")) {
          found.add(cmd.getCommandSpec().qualifiedName() + " " + option.longestName() + " (default " + option.defaultValue() + ")");
        }
      }
    });
    return found;
  }

  /**
   * Descriptions split inside a sentence. Picocli starts each element of a description on a line of
   * its own, and a parent's list of commands shows only a command's first: every element but the
   * last must end a sentence.
   */
  public static List<String> sentencesSplit(CommandLine root) {
    List<String> found = new ArrayList<>();
    visit(root, cmd -> {
      CommandSpec spec = cmd.getCommandSpec();
      check(spec.qualifiedName(), spec.usageMessage().description(), found);
      for (OptionSpec option : spec.options()) {
        check(spec.qualifiedName() + " " + option.longestName(), option.description(), found);
      }
      for (PositionalParamSpec parameter : spec.positionalParameters()) {
        check(spec.qualifiedName() + " " + parameter.paramLabel(), parameter.description(), found);
      }
    });
    return found;
  }

  private static void check(String where, String[] description, List<String> found) {
    for (int i = 0; i < description.length - 1; i++) {
      String text = description[i].strip();
      if (!(text.endsWith(".") || text.endsWith(":") || text.endsWith(")") || text.endsWith("?"))) {
        found.add(where + ": \"" + text + "\"");
      }
    }
  }

  private static void visit(CommandLine cmd, Consumer<CommandLine> action) {
    action.accept(cmd);
    for (CommandLine sub : cmd.getSubcommands().values()) {
      visit(sub, action);
    }
  }

  private static boolean blank(String[] description) {
    return description.length == 0 || String.join("", description).isBlank();
  }
}
