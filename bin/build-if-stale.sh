# Sourced by bin/modelgate and bin/modelgate-bench: builds a launcher's jar when it is missing or
# older than a source, resource or POM (after a git pull, say). Builds are taken one at a time
# (flock, where the machine has it): replicas launched together from one checkout wait for the
# first one's build and then run what it built, rather than racing Maven over the same folders.

# build_if_stale NAME MODULE: builds MODULE (with what it needs) into $root/MODULE/target when
# $root/MODULE/target/NAME.jar or its lib/ is missing, or a file of the modules MODULE builds from
# is newer than the jar; NAME speaks in the messages. Needs $root.
build_if_stale() {
  local name=$1 module=$2
  local jar="$root/$module/target/$name.jar"
  stale_because "$jar" "$module" || return 0
  mkdir -p "$root/target"
  {
    if command -v flock >/dev/null 2>&1; then
      flock 9
    fi
    # Built by another launch while this one waited: nothing to do.
    if stale_because "$jar" "$module"; then
      if [[ -n "$because" ]]; then
        echo "$name: sources changed since the last build (${because#"$root/"}, ...); rebuilding..." >&2
      else
        echo "$name: building (first use; this takes a minute)..." >&2
      fi
      (cd "$root" && mvn -q -B -DskipTests -pl "$module" -am install) >&2
      touch "$jar"
    fi
  } 9>"$root/target/.build-lock"
}

# stale_because JAR MODULE: whether JAR is to be built; sets because to the first file newer than it
# (empty when it is missing).
stale_because() {
  local jar=$1 module=$2
  because=""
  [[ -f "$jar" && -d "$(dirname "$jar")/lib" ]] || return 0
  local dirs=("$root/pom.xml" "$root/proto" "$root/runtime" "$root/gateway")
  [[ "$module" == gateway ]] || dirs+=("$root/$module")
  because="$(find "${dirs[@]}" -path '*/target' -prune -o -type f -newer "$jar" \
    \( -name '*.java' -o -name '*.proto' -o -name 'pom.xml' -o -path '*/src/main/resources/*' \) -print -quit 2>/dev/null || true)"
  [[ -n "$because" ]]
}
