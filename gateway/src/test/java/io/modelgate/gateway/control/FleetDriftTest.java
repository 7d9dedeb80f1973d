package io.modelgate.gateway.control;

import static org.assertj.core.api.Assertions.assertThat;

import io.modelgate.proto.admin.v1.DriftSketches;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The order in which the judge merges the fleet's sketches (the merge takes the first's model file). */
class FleetDriftTest {
  private static DriftSketches of(String sha) {
    return DriftSketches.newBuilder().setModelSha256(sha).build();
  }

  @Test
  void theReplicasOfTheFileMostServe_comeFirst_whicheverReplicaJudges() {
    Map<String, DriftSketches> byReplica = new LinkedHashMap<>();
    byReplica.put("r3", of("other"));
    byReplica.put("r2", of("demo"));
    byReplica.put("r4", of("demo"));
    byReplica.put("r5", of("third"));
    assertThat(FleetDrift.mostServedFirst(byReplica).keySet()).containsExactly("r2", "r4", "r3", "r5");

    // A tie: the file seen first, each group in its order.
    byReplica.remove("r4");
    assertThat(FleetDrift.mostServedFirst(byReplica).keySet()).containsExactly("r3", "r2", "r5");
    assertThat(FleetDrift.mostServedFirst(Map.of())).isEmpty();
  }
}
