#!/usr/bin/env bash
# Regenerates the outputs of the fleet section of docs/operators-guide.md: starts a real etcd and
# two replicas of `bin/modelgate serve` on the demo sharing it, then runs the section's commands in
# order and prints each command and its output ("$ cmd"). Needs etcd and etcdctl (Debian:
# etcd-server, etcd-client).
#   docs/guide/fleet-transcript.sh > /tmp/fleet.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

base=${GUIDE_FLEET_PORT:-24000}
etcd_port=$((base + 79))

# shellcheck source=docs/guide/show.sh
source docs/guide/show.sh
with_cleanup

start_etcd "$etcd_port" "$work"
echo "fleet-transcript-admin-token-0123456789" >"$work/token"

# Replica rN listens on base+10N+1 (gRPC), +2 (metrics), +3 (admin); a 1 s inference warm-up, not
# the default 10 s: CI runs this script, and the warm-up only delays it.
for n in 1 2; do
  start_replica "$n" "$base" "$etcd_port" --judge-lease 3s --fleet-drift-every 10s
done
for n in 1 2; do
  wait_serving "$work/r$n.log" "replica r$n"
done

admin() { local n=$1; shift; bin/modelgate admin --target "localhost:$((base + 10 * n + 3))" --token-file "$work/token" "$@"; }
# run_on N ARGS...: an admin command against replica rN, shown with that replica's admin address.
run_on() { local n=$1; shift; show admin --target "r$n:8003" "$@"; admin "$n" "$@" 2>&1 || true; echo; }
# wait_models N PATTERN: waits up to 15 s for a line of replica rN's `admin models` to match PATTERN.
wait_models() {
  local _
  for _ in $(seq 1 30); do
    admin "$1" models 2>/dev/null | grep -E "$2" >/dev/null && return 0
    sleep 0.5
  done
  return 0  # the checks of what the transcript shows say whether it came
}

echo "## fleet 1. every replica, one routing"
run_on 1 models
run_on 1 routes set --model cnn_mnist --weights 1=90,2=10 --reason "10% canary, set on r1"
sleep 0.2
run_on 2 routes get --model cnn_mnist

echo "## fleet 2. two operators, one revision"
run_on 1 routes set --model cnn_mnist --weights 1=80,2=20 --revision 1 --reason "20%, on r1"
run_on 2 routes set --model cnn_mnist --weights 1=100 --revision 1 --reason "back to v1, on r2, from revision 1"

echo "## fleet 3. the fleet's statistics"
for n in 1 2; do
  bin/modelgate infer --target "localhost:$((base + 10 * n + 1))" --model cnn_mnist --digit $((n + 3)) --repeat 1500 >/dev/null
done
sleep 5.5
run_on 1 stats --fleet --model cnn_mnist

echo "## fleet 4. etcd down"
kill "$etcd_pid"; wait "$etcd_pid" 2>/dev/null || true
sleep 2
run_on 2 models
run_on 2 routes set --model cnn_mnist --weights 1=100 --reason "while etcd is down"
show infer --target r2:8001 --model cnn_mnist --digit 7
bin/modelgate infer --target "localhost:$((base + 21))" --model cnn_mnist --digit 7
echo
start_etcd "$etcd_port" "$work"
sleep 3
run_on 2 routes set --model cnn_mnist --weights 1=100 --reason "etcd is back"
sleep 0.2
run_on 1 routes get --model cnn_mnist

echo "## fleet 5. the audit log in etcd"
echo "\$ etcdctl get --prefix /modelgate/audit/ --print-value-only | tail -n 1"
ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$etcd_port" get --prefix /modelgate/audit/ --print-value-only | tail -n 1

echo "## fleet 6. a rollout's control on every replica"
run_on 1 rollout start --model cnn_mnist --baseline 1 --candidate 2 --control copy --steps 10,100 --interval 60s
# r2 loads its own copy within a second of seeing the rollout.
for _ in $(seq 1 30); do
  admin 2 models 2>/dev/null | grep -E '^cnn_mnist +3 +READY' >/dev/null && break
  sleep 0.5
done
run_on 2 models
run_on 2 rollout abort --model cnn_mnist
# Every replica unloads its copy within a second of the rollout's end.
for n in 1 2; do
  wait_models "$n" '^cnn_mnist +3 +UNAVAILABLE'
done
run_on 1 models

echo "## fleet 7. a replica that loaded another file"
# Replica r3's repository has another model.onnx as version 2 (the demo's faulty version copied
# over it): a deployment that went wrong on one node.
bin/modelgate demo "$work/r3-repo" --faulty-version 3 >/dev/null
cp "$work/r3-repo/cnn_mnist/3/model.onnx" "$work/r3-repo/cnn_mnist/2/model.onnx"
rm -r "$work/r3-repo/cnn_mnist/3"
start_replica 3 "$base" "$etcd_port" --judge-lease 3s --fleet-drift-every 10s --model-repository "$work/r3-repo"
wait_serving "$work/r3.log" "replica r3"
# Each replica publishes its versions every few seconds.
sleep 6
run_on 1 stats --fleet --model cnn_mnist

echo "## fleet 8. a version unloaded and loaded again, on every replica"
run_on 1 routes set --model cnn_mnist --weights 2=1 --reason "v2 everywhere"
run_on 1 unload --model cnn_mnist --version 1
# Every other replica follows within a second or two.
for n in 2 3; do
  wait_models "$n" '^cnn_mnist +1 +UNAVAILABLE'
done
run_on 2 models
run_on 2 load --model cnn_mnist --version 1
wait_models 1 '^cnn_mnist +1 +READY'
run_on 1 models
# A version only r1's repository has: the others cannot follow, and say so.
r1_models=$(sed -n 's/^model repository: \(.*\) (embedded demo)$/\1/p' "$work/r1.log" | head -n 1)
mkdir -p "$r1_models/cnn_mnist/4" && cp "$r1_models/cnn_mnist/1/model.onnx" "$r1_models/cnn_mnist/4/"
run_on 1 load --model cnn_mnist --version 4
sleep 2
run_on 2 models
run_on 1 unload --model cnn_mnist --version 4

echo "## fleet 8b. a version loaded again on every replica"
run_on 1 load --model cnn_mnist --version 2 --reload
# Every other replica with it READY follows within a second or two, each from its own folder.
for n in 2 3; do
  for _ in $(seq 1 30); do grep -q "version 2 reloaded" "$work/r$n.log" && break; sleep 0.5; done
done
echo "\$ grep -E \"version 2 (loaded again|reloaded)\" r2.log r3.log   # the start of each line"
for n in 2 3; do
  grep -E "version 2 (loaded again|reloaded)" "$work/r$n.log" | sed -E "s/^[^ ]+ +[A-Z]+ +[A-Za-z]+ - /r$n.log: /; s/ *\$//" | cut -c1-124
done
echo "\$ etcdctl get --prefix /modelgate/audit/ --print-value-only | grep FleetReload"
ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$etcd_port" get --prefix /modelgate/audit/ --print-value-only | grep FleetReload || true
echo

echo "## fleet 9. a replica that starts after an unload"
run_on 1 unload --model cnn_mnist --version 1
wait_models 2 '^cnn_mnist +1 +UNAVAILABLE'
# r2 restarts: it reads the fleet's asks before it loads its repository.
kill "${replica_pid[2]}"; wait "${replica_pid[2]}" 2>/dev/null || true
start_replica 2 "$base" "$etcd_port" --judge-lease 3s --fleet-drift-every 10s
wait_serving "$work/r2.log" "replica r2"
echo "\$ grep 'cnn_mnist.*left unloaded' r2.log"
grep -o "model 'cnn_mnist' version 1 left unloaded.*" "$work/r2.log" | sed 's/ *$//' || true
echo
run_on 2 models

echo "## fleet 10. a load no replica left can follow, withdrawn"
# r1 loads version 4 again (only its repository has the folder), then goes away for good.
run_on 1 load --model cnn_mnist --version 4
wait_models 2 '^NOT LOADED HERE: model cnn_mnist version 4'
kill "${replica_pid[1]}"; wait "${replica_pid[1]}" 2>/dev/null || true
run_on 2 models
run_on 2 unload --model cnn_mnist --version 4
sleep 1
run_on 3 models

echo "## fleet 11. a logger's level on every replica, for a while"
run_on 2 log --logger io.etcd --level DEBUG --for 10m --fleet
sleep 1  # etcd's watch tells every replica at once
run_on 3 log
run_on 3 log --logger io.etcd --restore --fleet
sleep 1
run_on 2 log

echo "## fleet 12. a drift reference asked of every replica"
# Inverted digits to both replicas: each version 2 drifts from its golden set, then an operator makes
# this traffic the reference everywhere; each replica takes its own last minute.
for n in 2 3; do
  bin/modelgate infer --target "localhost:$((base + 10 * n + 1))" --model cnn_mnist --version 2 --every-digit \
    --invert --repeat 124 >/dev/null
done
run_on 2 drift baseline --model cnn_mnist --version 2 --window 1m --fleet
sleep 2  # etcd's watch tells every replica at once; each sets it from its own window
run_on 3 drift --model cnn_mnist --version 2
echo "\$ etcdctl get --prefix /modelgate/audit/ --print-value-only | grep SetDriftBaseline"
ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$etcd_port" get --prefix /modelgate/audit/ --print-value-only |
  grep SetDriftBaseline || true
# Every replica's drift in one report; digits the right way up again, on r3 alone, drift there.
bin/modelgate infer --target "localhost:$((base + 31))" --model cnn_mnist --version 2 --every-digit --repeat 124 >/dev/null
sleep 3  # r3 publishes every 2 s
run_on 2 drift --model cnn_mnist --version 2 --fleet

echo "## fleet 13. the fleet's drift as one"
# A fourth replica on the demo, as r2 (r3's version 2 is another model file). Upright digits to r2
# and r4; then r4 asks every replica for its sketches (each answers as soon as etcd's watch tells
# it of the ask) and merges those of the same model file with its own.
start_replica 4 "$base" "$etcd_port" --judge-lease 3s --fleet-drift-every 10s
wait_serving "$work/r4.log" "replica r4"
for n in 2 4; do
  bin/modelgate infer --target "localhost:$((base + 10 * n + 1))" --model cnn_mnist --version 2 --every-digit \
    --repeat 124 >/dev/null
done
sleep 3  # r4 publishes every 2 s: r2 and r3 know it
run_on 4 drift --model cnn_mnist --version 2 --merged
# One reference for the fleet: r4 merges every replica's last minute of version 2 (r3's is another
# file: left out) and keeps it in etcd; r2 takes it at once, as would a replica started later;
# r3 says why it does not.
run_on 4 drift baseline --model cnn_mnist --version 2 --window 1m --merged
sleep 2  # etcd's watch tells every replica at once
run_on 2 drift --model cnn_mnist --version 2
echo "\$ etcdctl get --prefix /modelgate/audit/ --print-value-only | grep '1m window, merged from'"
ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$etcd_port" get --prefix /modelgate/audit/ --print-value-only |
  grep '1m window, merged from' || true

echo "## fleet 14. the fleet's drift watched"
# Every replica runs with --fleet-drift-every 10s: the one that judges rollouts merges every
# replica's sketches each 10 s (as drift --merged) and exports the fleet's scores. Inverted digits
# to r2 and r4, ten times as many as the upright ones of section 13 still in their last minute
# (the fleet's reference holds a third of inverted ones, r2's of section 12); then the judge's
# series of version 2.
judge=$(admin 4 models | sed -n 's/.*rollouts judged by r\([0-9]*\).*/\1/p' | head -n 1)
for n in 2 4; do
  bin/modelgate infer --target "localhost:$((base + 10 * n + 1))" --model cnn_mnist --version 2 --every-digit \
    --invert --repeat 620 >/dev/null
done
fleet_series() {
  curl -s "localhost:$((base + 10 * judge + 2))/metrics" |
    grep -E '^modelgate_drift_fleet_(replicas|left_out|drifted)\{.*model="cnn_mnist".*version="2"' || true
}
# A round every 10 s after the last ended, each waiting up to 6 s for the answers: within 45 s.
for _ in $(seq 1 90); do
  fleet_series | grep -E 'drifted\{.*tensor="input_image".* 1\.0$' >/dev/null && break
  sleep 0.5
done
echo "\$ curl -s r$judge:8002/metrics | grep -E '^modelgate_drift_fleet_(replicas|left_out|drifted)\\{.*model=\"cnn_mnist\".*version=\"2\"'"
fleet_series
