#!/usr/bin/env bash
# Builds what the container image holds besides the application (which Jib adds): a Java runtime
# linked with jlink from the build's own JDK, the shared libraries it and ONNX Runtime load, copied
# from the build machine, and a non-root user. Nothing is pulled from a registry: the image starts
# FROM scratch.
#
# usage: build-root.sh OUT_DIR JAVA_HOME LIB_DIR   (LIB_DIR: the runtime dependencies' jars)
set -euo pipefail
out=$1
java_home=$2
ort_jars=("$3"/onnxruntime*.jar)
ort_jar=${ort_jars[0]}
tls_jars=("$3"/netty-tcnative-boringssl-static-*-linux-x86_64.jar)
tls_jar=${tls_jars[0]}

# The modules `jdeps --print-module-deps --recursive` finds over the runtime classpath, plus TLS
# with elliptic curves (jdk.crypto.ec) and the JNDI DNS provider (jdk.naming.dns).
modules=java.base,java.compiler,java.desktop,java.naming,java.sql,jdk.management,jdk.unsupported,jdk.crypto.ec,jdk.naming.dns

rm -rf "$out"
mkdir -p "$out"/{opt,etc,tmp,models,var/lib/modelgate}
"$java_home/bin/jlink" --add-modules "$modules" --strip-debug --no-header-files --no-man-pages \
  --output "$out/opt/java"
# Debian's JDK links its CA store; the image gets the file itself.
if [ -L "$out/opt/java/lib/security/cacerts" ] || [ ! -s "$out/opt/java/lib/security/cacerts" ]; then
  cp -L "$java_home/lib/security/cacerts" "$out/opt/java/lib/security/cacerts.real" && \
    mv -f "$out/opt/java/lib/security/cacerts.real" "$out/opt/java/lib/security/cacerts"
fi

# ONNX Runtime's and BoringSSL's (TLS) native libraries, only to ask the dynamic linker what they
# need; at run time ONNX Runtime's binding and Netty extract their own copies from the jars into /tmp.
ort_dir=$(mktemp -d)
trap 'rm -rf "$ort_dir"' EXIT
(cd "$ort_dir" && "$java_home/bin/jar" xf "$ort_jar" ai/onnxruntime/native/linux-x64/ \
  && "$java_home/bin/jar" xf "$tls_jar" META-INF/native/)

# Every shared library the runtime's binaries and ONNX Runtime load, with the dynamic linker,
# at the paths the linker looks for them.
# The desktop module's native parts (AWT, fonts, sound, images) are never loaded by a headless
# server; their X11 and font libraries stay out.
objects=("$out/opt/java/bin/java"
  $(find "$out/opt/java/lib" -name '*.so' | grep -vE '/lib(awt|awt_xawt|awt_headless|fontmanager|javajpeg|jsound|lcms|mlib_image|splashscreen|jawt)\.so$')
  $(find "$ort_dir" -name '*.so'))
libs=$(for o in "${objects[@]}"; do ldd "$o" 2>/dev/null | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}'; done | sort -u)
for lib in $libs; do
  case "$lib" in "$out"/*|"$ort_dir"/*) continue ;; esac
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done
# Debian merges /lib into /usr/lib: the linker's trusted directories are both.
for dir in lib lib64; do
  if [ -d "$out/usr/$dir" ]; then
    mkdir -p "$out/$dir"
    cp -an "$out/usr/$dir/." "$out/$dir/"
  fi
done

# The JVM options the entrypoint gives this runtime (an argument file, `@/opt/java/modelgate-jvm-options`),
# chosen for its JDK as bin/modelgate chooses them: bin/jvm-options.sh.
# shellcheck source=../../bin/jvm-options.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../bin/jvm-options.sh"
modelgate_jvm_options "$java_home/bin/java"
printf '%s\n' "${jvm_options[@]}" >"$out/opt/java/modelgate-jvm-options"

# A user to run as (uid 10001), and the name-service defaults.
cat >"$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
modelgate:x:10001:10001:modelgate:/var/lib/modelgate:/sbin/nologin
PASSWD
cat >"$out/etc/group" <<'GROUP'
root:x:0:
modelgate:x:10001:
GROUP
echo 'hosts: files dns' >"$out/etc/nsswitch.conf"
echo "image root: $(du -sh "$out" | cut -f1) ($(echo "$libs" | wc -w) shared libraries)"
