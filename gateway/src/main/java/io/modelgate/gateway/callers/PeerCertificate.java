package io.modelgate.gateway.callers;

import java.security.cert.Certificate;
import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;
import javax.security.auth.x500.X500Principal;

/**
 * What a client certificate says of its holder, read once per TLS connection: its subject, and
 * the URIs and DNS names of its subject alternative names (a service mesh's workload certificates —
 * SPIFFE, Istio, Linkerd — name the workload by a URI such as {@code
 * spiffe://example.org/ns/fraud/sa/scorer} and may have an empty subject). Immutable.
 *
 * @param subject the subject, its canonical form already made (the JDK keeps it in the name)
 * @param uris the URI alternative names, as written in the certificate
 * @param dnsNames the DNS alternative names, lower case
 */
public record PeerCertificate(X500Principal subject, List<String> uris, List<String> dnsNames) {
  /** The type numbers of {@link X509Certificate#getSubjectAlternativeNames}: DNS name and URI. */
  private static final int DNS = 2;
  private static final int URI = 6;

  public PeerCertificate {
    subject.getName(X500Principal.CANONICAL);
    uris = List.copyOf(uris);
    dnsNames = dnsNames.stream().map(name -> name.toLowerCase(Locale.ROOT)).toList();
  }

  /** A certificate with a subject and no alternative names. */
  public static PeerCertificate withSubject(String distinguishedName) {
    return new PeerCertificate(new X500Principal(distinguishedName), List.of(), List.of());
  }

  /** The session's client certificate, or null (no session, or no client certificate). */
  public static PeerCertificate of(SSLSession session) {
    if (session == null) {
      return null;
    }
    try {
      Certificate[] certificates = session.getPeerCertificates();
      if (certificates.length > 0 && certificates[0] instanceof X509Certificate x509) {
        return of(x509);
      }
    } catch (SSLPeerUnverifiedException e) {
      // TLS without a client certificate.
    }
    return null;
  }

  static PeerCertificate of(X509Certificate certificate) {
    List<String> uris = new ArrayList<>();
    List<String> dnsNames = new ArrayList<>();
    try {
      Collection<List<?>> names = certificate.getSubjectAlternativeNames();
      if (names != null) {
        for (List<?> name : names) {
          if (name.size() == 2 && name.get(0) instanceof Integer type && name.get(1) instanceof String value) {
            if (type == URI) {
              uris.add(value);
            } else if (type == DNS) {
              dnsNames.add(value);
            }
          }
        }
      }
    } catch (CertificateParsingException e) {
      // Alternative names that do not parse name nobody; the subject still may.
    }
    return new PeerCertificate(certificate.getSubjectX500Principal(), uris, dnsNames);
  }

  /** For messages: the subject, and the alternative names when there are any. */
  public String describe() {
    StringBuilder text = new StringBuilder(subject.getName().isEmpty() ? "with an empty subject" : subject.getName());
    if (!uris.isEmpty() || !dnsNames.isEmpty()) {
      List<String> names = new ArrayList<>();
      uris.forEach(uri -> names.add("uri:" + uri));
      dnsNames.forEach(dns -> names.add("dns:" + dns));
      text.append(" (").append(String.join(", ", names)).append(')');
    }
    return text.toString();
  }
}
