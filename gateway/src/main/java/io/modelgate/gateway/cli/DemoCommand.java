package io.modelgate.gateway.cli;

import io.modelgate.gateway.demo.DemoRepository;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code modelgate demo DIR}: writes the embedded demo as a model repository to look at or change. */
@Command(
    name = "demo",
    description = {
      "Write the embedded demo repository to a folder, to read its format or serve it with --model-repository.",
      "It holds cnn_mnist versions 1 and 2, model.yaml and its golden set of 62 labelled digits."
    })
final class DemoCommand implements Callable<Integer> {
  @Spec CommandSpec spec;
  @Mixin HelpOption help;

  @Parameters(paramLabel = "DIR", description = "The folder to write (created; must not hold the demo already).")
  Path dir;

  @Option(
      names = "--faulty-version",
      paramLabel = "N",
      description = {
        "Also write version N: version 1 with classes 3 and 5 swapped. It serves and is as fast, but"
            + " answers 3 for a 5: its golden score is lower and rollouts to it are refused."
      })
  Long faultyVersion;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    if (Files.exists(dir.resolve(DemoRepository.MODEL))) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          dir.resolve(DemoRepository.MODEL) + " exists already (expected: a folder without the demo)");
    }
    if (faultyVersion != null && faultyVersion <= 2) {
      throw new picocli.CommandLine.ParameterException(spec.commandLine(),
          "--faulty-version " + faultyVersion + " (expected: a version number above 2)");
    }
    DemoRepository.materialize(dir);
    if (faultyVersion != null) {
      DemoRepository.addFaultyVersion(dir, faultyVersion);
    }
    out.printf("wrote the demo repository to %s: %s versions 1, 2%s, model.yaml, golden/digits.jsonl%n", dir,
        DemoRepository.MODEL, faultyVersion == null ? "" : " and " + faultyVersion + " (classes 3 and 5 swapped)");
    return 0;
  }
}
