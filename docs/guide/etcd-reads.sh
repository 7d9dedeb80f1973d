#!/usr/bin/env bash
# Measures how many requests an idle fleet makes of its etcd: one etcd on loopback, REPLICAS
# replicas of `bin/modelgate serve` on the demo, no traffic and no change; once every replica
# serves and SETTLE seconds have passed, counts etcd's range (read), put/txn (write) and watch
# requests over SECONDS from etcd's own metrics (grpc_server_handled_total by method), and prints
# them per replica and second. BENCHMARKS.md has a run; CI runs it briefly so that it cannot rot.
#   docs/guide/etcd-reads.sh [REPLICAS] [SECONDS] [SETTLE]    (defaults 3, 60 and 60)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
replicas=${1:-3}
seconds=${2:-60}
settle=${3:-60}
base=${GUIDE_READS_PORT:-26000}
etcd_port=$((base + 79))

# shellcheck source=docs/guide/show.sh
source docs/guide/show.sh
with_cleanup
echo "etcd-reads-admin-token-0123456789" >"$work/token"
start_etcd "$etcd_port" "$work"
for n in $(seq 1 "$replicas"); do
  start_replica "$n" "$base" "$etcd_port"
done
for n in $(seq 1 "$replicas"); do wait_serving "$work/r$n.log" "replica r$n"; done
sleep "$settle"  # the golden runs, first publishes and the judge's election settle

counts() {  # counts: "Range Txn Put Watch LeaseKeepAlive" requests handled by etcd so far
  curl -s "http://127.0.0.1:$etcd_port/metrics" | awk '
    /^grpc_server_handled_total\{/ {
      match($0, /grpc_method="[A-Za-z]+"/); m = substr($0, RSTART + 13, RLENGTH - 14); n[m] += $NF
    }
    END { printf "%d %d %d %d %d\n", n["Range"], n["Txn"], n["Put"], n["Watch"], n["LeaseKeepAlive"] }'
}
read -r r0 t0 p0 w0 k0 <<<"$(counts)"
sleep "$seconds"
read -r r1 t1 p1 w1 k1 <<<"$(counts)"
per() { python3 -c "print(f'{($2 - $1) / $replicas / $seconds:.2f}')"; }
echo "idle fleet of $replicas replicas, $seconds s: etcd requests per replica and second"
echo "range (reads): $(per "$r0" "$r1")"
echo "txn:           $(per "$t0" "$t1")"
echo "put:           $(per "$p0" "$p1")"
echo "watch streams: $(per "$w0" "$w1") (ended)"
echo "lease keep-alives: $(per "$k0" "$k1")"
