#!/usr/bin/env bash
# Measures what a fleet's etcd holds over time with and without the replicas compacting its
# history (--etcd-compaction): two etcds on loopback, neither compacting by itself (etcd's
# default), each with one replica of `bin/modelgate serve` on the demo under light steady traffic;
# one replica compacts every minute, the other leaves compaction to etcd (0). Prints each etcd's
# revision, database size and size in use every minute. BENCHMARKS.md has a run.
#   docs/guide/etcd-growth.sh [MINUTES]    (default 6)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
minutes=${1:-6}
base=${GUIDE_GROWTH_PORT:-25000}

# shellcheck source=docs/guide/show.sh
source docs/guide/show.sh
with_cleanup
echo "etcd-growth-admin-token-0123456789" >"$work/token"
# Replica 1 compacts every minute; replica 2 leaves it to etcd. Each has its own etcd.
for n in 1 2; do
  mkdir -p "$work/e$n"
  start_etcd $((base + 70 + 2 * n)) "$work/e$n"
done
start_replica 1 "$base" $((base + 72)) --etcd-compaction 1m
start_replica 2 "$base" $((base + 74)) --etcd-compaction 0
for n in 1 2; do wait_serving "$work/r$n.log" "replica r$n"; done

status() {  # status ETCD_PORT: revision, db size and size in use (bytes)
  ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$1" endpoint status -w json |
    python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; print(s["header"]["revision"], s["dbSize"], s.get("dbSizeInUse", "-"))'
}
# Light steady traffic on both, so that every version's statistics change every interval.
traffic() {
  while true; do
    for n in 1 2; do
      bin/modelgate infer --target "localhost:$((base + 10 * n + 1))" --model cnn_mnist --digit 3 --repeat 50 >/dev/null 2>&1 || true
    done
    sleep 1
  done
}
traffic &
pids+=("$!")
printf '%-7s %-40s %s\n' minute "compacting every minute: rev db in-use" "not compacting: rev db in-use"
for m in $(seq 0 "$minutes"); do
  printf '%-7s %-40s %s\n' "$m" "$(status $((base + 72)))" "$(status $((base + 74)))"
  [ "$m" -lt "$minutes" ] && sleep 60
done
grep -c "compacted" "$work/r1.log" >/dev/null || true
