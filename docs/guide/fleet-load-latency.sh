#!/usr/bin/env bash
# Measures how long an operator's unload and load on one replica of a fleet take to be done on
# another: starts a real etcd and two replicas of `bin/modelgate serve` on the demo, then N times
# unloads version 1 of cnn_mnist on r1 and waits until r2's metrics say UNAVAILABLE, then loads it
# on r1 and waits until r2's say READY. Each time is from the admin command's return (r1 has done
# it and written the ask to etcd) to the first scrape of r2 that shows it (scraped every 10 ms).
# Needs etcd (Debian: etcd-server).
#   docs/guide/fleet-load-latency.sh [N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

rounds=${1:-10}
base=${FLEET_LATENCY_PORT:-25000}
etcd_port=$((base + 79))
# shellcheck source=docs/guide/show.sh
source docs/guide/show.sh
with_cleanup

start_etcd "$etcd_port" "$work"
echo "fleet-latency-admin-token-0123456789" >"$work/token"
for n in 1 2; do
  start_replica "$n" "$base" "$etcd_port"
done
for n in 1 2; do
  wait_serving "$work/r$n.log" "replica r$n"
done
admin() { local n=$1; shift; bin/modelgate admin --target "localhost:$((base + 10 * n + 3))" --token-file "$work/token" "$@"; }
admin 1 routes set --model cnn_mnist --weights 2=1 --reason "v2 only: v1 may go" >/dev/null

# until_r2 STATE: ms from now until r2's metrics show cnn_mnist version 1 in STATE.
until_r2() {
  local start now
  start=$(date +%s%N)
  until curl -s "localhost:$((base + 22))/metrics" \
      | grep -q "^modelgate_version_state{model=\"cnn_mnist\",state=\"$1\",version=\"1\"} 1.0"; do
    sleep 0.01
  done
  now=$(date +%s%N)
  echo $(((now - start) / 1000000))
}

echo "round unload_ms load_ms"
for i in $(seq 1 "$rounds"); do
  admin 1 unload --model cnn_mnist --version 1 >/dev/null
  unload=$(until_r2 UNAVAILABLE)
  admin 1 load --model cnn_mnist --version 1 >/dev/null
  load=$(until_r2 READY)
  echo "$i $unload $load"
done
grep -c 'READY in' "$work/r2.log" | sed 's/^/r2 READY lines (its start and the loads): /'
grep 'version 1 READY in' "$work/r2.log" | tail -n 3 | sed 's/^.*\(version 1 READY in [0-9]* ms\).*$/r2: \1/'
