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
 * @param uriPrefixes each URI's prefixes that end with a {@code /} after its authority, longest
 *     first, the URIs in their order: what a callers file's {@code uri:.../*} entries are looked up
 *     by ({@code spiffe://example.org/ns/fraud/sa/scorer} gives {@code
 *     spiffe://example.org/ns/fraud/sa/}, {@code .../ns/fraud/}, {@code .../ns/} and {@code
 *     spiffe://example.org/}), made once per connection so that a call allocates nothing
 */
public record PeerCertificate(X500Principal subject, List<String> uris, List<String> dnsNames, List<String> uriPrefixes) {
  /** The type numbers of {@link X509Certificate#getSubjectAlternativeNames}: DNS name and URI. */
  private static final int DNS = 2;
  private static final int URI = 6;

  public PeerCertificate {
    subject.getName(X500Principal.CANONICAL);
    uris = List.copyOf(uris);
    dnsNames = dnsNames.stream().map(name -> name.toLowerCase(Locale.ROOT)).toList();
    uriPrefixes = List.copyOf(uriPrefixes);
  }

  /** A certificate with these names, its URIs' prefixes made from them. */
  public PeerCertificate(X500Principal subject, List<String> uris, List<String> dnsNames) {
    this(subject, uris, dnsNames, prefixes(uris));
  }

  /** Each URI's prefixes ending with {@code /} after {@code scheme://authority}, longest first. */
  static List<String> prefixes(List<String> uris) {
    List<String> prefixes = new ArrayList<>();
    for (String uri : uris) {
      int scheme = uri.indexOf("://");
      int authority = scheme < 0 ? -1 : uri.indexOf('/', scheme + 3);
      if (authority < 0) {
        continue;
      }
      for (int slash = uri.lastIndexOf('/'); slash >= authority; slash = uri.lastIndexOf('/', slash - 1)) {
        prefixes.add(uri.substring(0, slash + 1));
      }
    }
    return prefixes;
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
