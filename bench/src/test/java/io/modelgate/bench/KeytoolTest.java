package io.modelgate.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The benchmarks' certificates: what keytool made is what a server and its clients read. */
class KeytoolTest {
  @TempDir Path dir;

  @Test
  void aSelfSignedCertificate_andItsKey_areReadAsTheServerAndItsClientsReadThem() throws Exception {
    Keytool.selfSigned(dir, "server", "CN=localhost", "SAN=dns:localhost,ip:127.0.0.1");
    Path[] pem = Keytool.pem(dir, "server");
    X509Certificate certificate;
    try (var in = Files.newInputStream(pem[0])) {
      certificate = io.grpc.util.CertificateUtils.getX509Certificates(in)[0];
    }
    assertThat(certificate.getSubjectX500Principal().getName()).isEqualTo("CN=localhost");
    assertThat(certificate.getIssuerX500Principal()).isEqualTo(certificate.getSubjectX500Principal());
    assertThat(certificate.getSubjectAlternativeNames().stream().map(name -> String.valueOf(name.get(1))).toList())
        .containsExactlyInAnyOrder("localhost", "127.0.0.1");
    assertThat(Files.readString(pem[1])).startsWith("-----BEGIN PRIVATE KEY-----\n");
    // The server's context takes the pair (a key that is not the certificate's is refused), and a
    // client's trusts the certificate.
    assertThat(io.grpc.netty.GrpcSslContexts.forServer(pem[0].toFile(), pem[1].toFile()).build().isServer()).isTrue();
    assertThat(io.modelgate.gateway.tls.ClientTls.context(pem[0], null, null).isClient()).isTrue();
    assertThat(java.util.Collections.list(Keytool.store(dir.resolve("server.p12")).aliases())).containsExactly("server");
    assertThat(List.of(pem)).allSatisfy(file -> assertThat(file).isRegularFile());
  }
}
