# Sourced (not run) by bin/modelgate, bin/modelgate-bench and the container image's build
# (deploy/image/build-root.sh): which java runs modelgate, and the JVM options it is given.
#
#   modelgate_java NAME         sets `java`: $JAVA_HOME/bin/java when JAVA_HOME is set (as Maven
#                               takes it), else the java on the PATH; NAME is for the error message
#   modelgate_jvm_options JAVA  sets the array `jvm_options` for that java's JDK (README, JVM options):
#     -XX:MaxTenuringThreshold=2             every JDK: a request's objects die young, the statistics'
#                                            windows live long; promoted at their second collection
#     --enable-native-access=ALL-UNNAMED     JDK 22 and later: ONNX Runtime, Netty's epoll and BoringSSL
#                                            load native libraries, which these JDKs warn of on stderr
#     --sun-misc-unsafe-memory-access=allow  JDK 23 and later: protobuf and Netty read memory through
#                                            sun.misc.Unsafe, which JDK 24 and later warn of on stderr
#                                            (both warnings would put lines that are not JSON into
#                                            --log-format json's log)
#     -XX:+UseCompactObjectHeaders           JDK 25 and later (a product option there): 8-byte object
#                                            headers, 11-12% less allocated a call (BENCHMARKS.md)
# Options of the user's own come after these on the command line, so they win.

modelgate_java() {
  java=java
  if [[ -n "${JAVA_HOME:-}" ]]; then
    java="$JAVA_HOME/bin/java"
    [[ -x "$java" ]] || { echo "$1: JAVA_HOME is $JAVA_HOME, which has no bin/java" >&2; exit 1; }
  fi
}

# Prints the feature version (17, 25, ...) of the JDK of java $1: from its release file where it has
# one (no JVM started), else from `java -version`; 0 when neither says.
modelgate_java_feature() {
  local bin home feature=""
  if bin=$(command -v "$1"); then
    home=$(dirname "$(dirname "$(readlink -f "$bin" 2>/dev/null || echo "$bin")")")
    if [[ -f "$home/release" ]]; then
      feature=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$home/release")
    fi
    if [[ -z "$feature" ]]; then
      feature=$("$1" -version 2>&1 | sed -n '1s/.* version "\([0-9]*\).*/\1/p')
    fi
  fi
  echo "${feature:-0}"
}

modelgate_jvm_options() {
  local feature
  feature=$(modelgate_java_feature "$1")
  jvm_options=(-XX:MaxTenuringThreshold=2)
  if ((feature >= 22)); then
    jvm_options+=(--enable-native-access=ALL-UNNAMED)
  fi
  if ((feature >= 23)); then
    jvm_options+=(--sun-misc-unsafe-memory-access=allow)
  fi
  if ((feature >= 25)); then
    jvm_options+=(-XX:+UseCompactObjectHeaders)
  fi
}
