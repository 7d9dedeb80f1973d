package io.modelgate.gateway.cli;

import picocli.CommandLine.Option;

/**
 * {@code -h, --help} alone, for subcommands. picocli's standard help options also declare {@code
 * -V, --version}, which clashes with the {@code --version} (a model version) that many of these
 * commands take: with the clash, {@code --help} itself stopped working.
 */
public final class HelpOption {
  @Option(names = {"-h", "--help"}, usageHelp = true, description = "Show this help message and exit.")
  boolean help;
}
