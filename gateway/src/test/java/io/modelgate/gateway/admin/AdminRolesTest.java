package io.modelgate.gateway.admin;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.modelgate.gateway.callers.CallerPolicy;
import io.modelgate.gateway.testing.Gateway;
import io.modelgate.proto.admin.v1.AccessReport;
import io.modelgate.proto.admin.v1.GetAccessRequest;
import io.modelgate.proto.admin.v1.GetRoutingRequest;
import io.modelgate.proto.admin.v1.ListModelsRequest;
import io.modelgate.proto.admin.v1.RoutingPolicy;
import io.modelgate.proto.admin.v1.SetRoutingRequest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Admin tokens with roles: viewers read, operators change, admins also see who has access; a role
 * too low is PERMISSION_DENIED and audited with the token's name; the server's own token stays
 * admin; the tokens file is read again when it changes.
 */
class AdminRolesTest {
  @TempDir Path root;

  private static final String VIEWER = "viewer-token-0123456789abcdef";
  private static final String OPERATOR = "operator-token-0123456789abcdef";

  private static void denied(Runnable call, String message) {
    assertThatThrownBy(call::run).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
      assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.PERMISSION_DENIED);
      assertThat(e.getStatus().getDescription()).isEqualTo(message);
    });
  }

  private static SetRoutingRequest weights(Gateway gateway, io.modelgate.proto.admin.v1.AdminServiceGrpc.AdminServiceBlockingStub as) {
    long revision = gateway.admin().getRouting(GetRoutingRequest.newBuilder().setModel("m").build()).getRevision();
    return SetRoutingRequest.newBuilder().setExpectedRevision(revision)
        .setPolicy(RoutingPolicy.newBuilder().setModel("m").putWeights(1, 100)).build();
  }

  @Test
  void eachRoleMayDoWhatItShould_andARefusalIsAudited() throws Exception {
    Gateway.write(root, "m", 1, Gateway.affine());
    Path tokens = root.resolve("tokens.yaml");
    Files.writeString(tokens, "tokens:\n"
        + "  grafana: {hash: " + CallerPolicy.hash(VIEWER) + ", role: viewer}\n"
        + "  deploy-bot: {hash: " + CallerPolicy.hash(OPERATOR) + ", role: operator}\n");
    try (Gateway gateway = Gateway.inProcessWithAdminTokens(root, tokens)) {
      var viewer = gateway.adminAs(VIEWER);
      var operator = gateway.adminAs(OPERATOR);
      assertThat(viewer.listModels(ListModelsRequest.getDefaultInstance()).getModelsCount()).isEqualTo(1);
      denied(() -> viewer.setRouting(weights(gateway, viewer)), "SetRouting needs the role operator; token 'grafana' has viewer");
      assertThat(operator.setRouting(weights(gateway, operator)).getWeightsMap()).containsEntry(1L, 100);
      denied(() -> operator.getAccess(GetAccessRequest.getDefaultInstance()), "GetAccess needs the role admin; token 'deploy-bot' has operator");
      assertThatThrownBy(() -> gateway.adminAs("not-a-token-0123456789abcdef").listModels(ListModelsRequest.getDefaultInstance()))
          .isInstanceOfSatisfying(StatusRuntimeException.class,
              e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED));

      // The server's own token is admin; the report names tokens and roles, never a hash.
      AccessReport access = gateway.admin().getAccess(GetAccessRequest.getDefaultInstance());
      assertThat(access.getTokensList()).extracting(t -> t.getName() + ":" + t.getRole())
          .containsExactlyInAnyOrder("admin:admin", "grafana:viewer", "deploy-bot:operator");
      assertThat(access.toString()).doesNotContain("sha256");

      // The change is audited with the operator's token; the refusal with the viewer's.
      Path audit = root.resolve(".state/audit.log");
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while ((!Files.exists(audit) || !Files.readString(audit).contains("PermissionDenied")) && System.nanoTime() < until) {
        Thread.sleep(20);
      }
      String log = Files.readString(audit);
      assertThat(log).contains("token:deploy-bot").contains("PermissionDenied")
          .contains("SetRouting needs the role operator; token \\u0027grafana\\u0027 has viewer").contains("token:grafana");

      // A new role takes effect when the file is read again.
      Files.writeString(tokens, "tokens:\n  grafana: {hash: " + CallerPolicy.hash(VIEWER) + ", role: operator}\n");
      Files.setLastModifiedTime(tokens, java.nio.file.attribute.FileTime.fromMillis(System.currentTimeMillis() + 5000));
      assertThat(gateway.server.adminTokens().reload()).isTrue();
      assertThat(viewer.setRouting(weights(gateway, viewer)).getWeightsMap()).containsEntry(1L, 100);
      assertThatThrownBy(() -> operator.listModels(ListModelsRequest.getDefaultInstance()))
          .isInstanceOfSatisfying(StatusRuntimeException.class,
              e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED));
    }
  }

  @Test
  void aTokensFileThatCannotBeUsed_saysWhy_andNeverEchoesAToken() throws Exception {
    Path tokens = root.resolve("tokens.yaml");
    Files.writeString(tokens, "tokens:\n  bot: {hash: " + OPERATOR + ", role: operator}\n");
    assertThatThrownBy(() -> AdminTokens.read("server-token-0123456789", tokens))
        .hasMessageStartingWith("tokens.bot.hash: expected sha256:<64 hex digits>").hasMessageNotContaining(OPERATOR);
    Files.writeString(tokens, "tokens:\n  bot: {hash: " + CallerPolicy.hash(OPERATOR) + ", role: root}\n");
    assertThatThrownBy(() -> AdminTokens.read("server-token-0123456789", tokens))
        .hasMessage("tokens.bot.role: root (expected: viewer, operator or admin)");
    Files.writeString(tokens, "tokens:\n  admin: {hash: " + CallerPolicy.hash(OPERATOR) + ", role: viewer}\n");
    assertThatThrownBy(() -> AdminTokens.read("server-token-0123456789", tokens))
        .hasMessage("tokens.admin: the name of the server's own token (choose another)");
  }
}
