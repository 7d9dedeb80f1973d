#!/usr/bin/env bash
# Regenerates the outputs shown in docs/operators-guide.md and the README's admin block: starts
# `bin/modelgate serve` on the embedded demo with a fresh state directory, runs the guide's
# commands in order, and prints each command and its output as the guide shows them ("$ cmd").
#   docs/guide/transcript.sh > /tmp/transcript.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

port=${GUIDE_PORT:-28001}
admin_port=$((port + 2))
metrics_port=$((port + 1))
repo=$(pwd)
# shellcheck source=docs/guide/show.sh
source "$repo/docs/guide/show.sh"
# As an operator would: from a working directory of its own, state in ./modelgate-state.
work=$(mktemp -d)
state=$work/modelgate-state
log=$work/serve.log
cd "$work"
# (A 1 s inference warm-up, not the default 10 s: CI runs this script, and the warm-up only delays it.)
"$repo/bin/modelgate" serve --warmup-inference 1s --grpc-port "$port" --admin-port "$admin_port" --metrics-port "$metrics_port" \
  --replica gw1 >"$log" 2>&1 &
pid=$!
trap 'stop_then_remove "$pid" "$work"' EXIT
wait_serving "$log"

mg() { "$repo/bin/modelgate" "$@"; }
admin() { "$repo/bin/modelgate" admin --target "localhost:$admin_port" "$@"; }
run_admin() { show admin "$@"; admin "$@" || true; echo; }
run_infer() { show infer "$@"; mg infer --target "localhost:$port" "$@" || true; echo; }

echo "## 1. look, then pin"
run_admin models
run_admin routes set --model cnn_mnist --weights 1=100 --reason "v1 serves; v2 is the candidate"

echo "## 2. shadow"
run_admin routes set --model cnn_mnist --weights 1=100 --shadow 2 --shadow-rate 0.5 --reason "shadow v2"
run_infer --model cnn_mnist --digit 5 --repeat 1000
sleep 5.5   # one statistics interval closes
run_admin stats --model cnn_mnist --window 1m
run_admin stats --model cnn_mnist --version 2 --window all

echo "## 3. canary and rollback"
run_admin routes set --model cnn_mnist --weights 1=90,2=10 --reason "10% canary"
run_infer --model cnn_mnist --digit 3 --repeat 2000
run_admin rollback --model cnn_mnist

echo "## 3b. sticky routing"
run_admin routes set --model cnn_mnist --weights 1=50,2=50 --sticky-parameter user --reason "sticky 50/50"
for user in alice bob carol dave; do
  run_infer --model cnn_mnist --digit 1 --sticky-key "$user" --repeat 20
done
run_admin routes set --model cnn_mnist --weights 1=100 --reason "back to v1"

echo "## 4. rollout"
run_admin rollout start --model cnn_mnist --baseline 1 --candidate 2 --steps 50,100 --interval 10s --min-samples 200
mg infer --target "localhost:$port" --model cnn_mnist --digit 2 --repeat 6000 >/dev/null || true
# The step is judged once it has lasted its 10 s (later on a busy machine): wait for the decision.
for _ in $(seq 1 60); do
  admin rollout status --model cnn_mnist 2>/dev/null | grep "candidate v2 against baseline v1, RUNNING" >/dev/null || break
  sleep 1
done
run_admin rollout status --model cnn_mnist
run_admin routes get --model cnn_mnist

echo "## 5. metrics"
echo "\$ curl -s localhost:8002/metrics | grep -E '^modelgate_requests_total\\{code=\"OK\",model=\"cnn_mnist\"'"
curl -s "localhost:$metrics_port/metrics" | grep -E '^modelgate_requests_total\{code="OK",model="cnn_mnist"' || true
echo "\$ curl -s localhost:8002/metrics | grep -E '^modelgate_(version_state|routing_weight)\\{model=\"cnn_mnist\"' | grep -v ' 0.0\$'"
curl -s "localhost:$metrics_port/metrics" | grep -E '^modelgate_(version_state|routing_weight)\{model="cnn_mnist"' | grep -v ' 0.0$' || true
echo "\$ curl -s localhost:8002/readyz"
curl -s "localhost:$metrics_port/readyz"

echo "## 6. audit"
echo "\$ tail -n 1 modelgate-state/audit.log"
tail -n 1 "$state/audit.log"

echo "## 7. a model added while serving"
# The embedded demo's repository folder, from the banner.
models=$(sed -n 's/^model repository: \(.*\) (embedded demo)$/\1/p' "$log" | head -n 1)
echo "\$ mkdir -p \$REPOSITORY/digits/1 && cp \$REPOSITORY/cnn_mnist/1/model.onnx \$REPOSITORY/digits/1/"
mkdir -p "$models/digits/1" && cp "$models/cnn_mnist/1/model.onnx" "$models/digits/1/"
run_admin models
run_admin load --model digits
run_infer --model digits --digit 7
run_admin models
# Retired: its folder deleted, the model taken down (removed from the lists 15 minutes later).
echo "\$ rm -r \$REPOSITORY/digits"
rm -r "$models/digits"
run_admin unload --model digits
run_admin models

echo "## 7b. a version loaded again while it serves"
# 16 callers on version 2 for 10 s; meanwhile model.yaml is edited and version 2 loaded again.
"$repo/bin/modelgate-bench" load --target "localhost:$port" --model cnn_mnist --version 2 --concurrency 16 \
  --warmup 1 --duration 10 >"$work/bench.txt" 2>&1 &
bench=$!
sleep 3
echo "\$ sed -i 's/^large_batch_rows: 16/large_batch_rows: 32/' \$REPOSITORY/cnn_mnist/model.yaml"
sed -i 's/^large_batch_rows: 16/large_batch_rows: 32/' "$models/cnn_mnist/model.yaml"
run_admin load --model cnn_mnist --version 2 --reload
echo "\$ grep -E \"version 2 (loaded again|reloaded)\" serve.log"
grep -E "version 2 (loaded again|reloaded)" "$log" | sed -E 's/^[^ ]+ +[A-Z]+ +[A-Za-z]+ - //; s/ *$//' || true
echo
# A model.yaml the new load cannot take: refused, the version serving as before.
echo "\$ sed -i 's/^max_batch_size: 64/max_batch_size: lots/' \$REPOSITORY/cnn_mnist/model.yaml"
cp "$models/cnn_mnist/model.yaml" "$work/model.yaml"
sed -i 's/^max_batch_size: 64/max_batch_size: lots/' "$models/cnn_mnist/model.yaml"
run_admin load --model cnn_mnist --version 2 --reload
cp "$work/model.yaml" "$models/cnn_mnist/model.yaml"
wait "$bench" || true
echo "\$ bin/modelgate-bench load --model cnn_mnist --version 2 --concurrency 16 --warmup 1 --duration 10   # meanwhile"
tail -n 2 "$work/bench.txt"
echo

echo "## 8. an unload kept across a restart"
run_admin unload --model cnn_mnist --version 1
# The server stops and starts again on the same state directory.
kill "$pid"; wait "$pid" 2>/dev/null || true
keep_earlier_log "$log"
"$repo/bin/modelgate" serve --warmup-inference 1s --grpc-port "$port" --admin-port "$admin_port" --metrics-port "$metrics_port" \
  --replica gw1 >"$log" 2>&1 &
pid=$!
wait_serving "$log"
echo "\$ grep 'left unloaded' serve.log"
grep -o "model 'cnn_mnist' version 1 left unloaded.*" "$log" | sed 's/ *$//' || true
echo
run_admin models
# The model retired in section 7 is not in the repository it started with: what the state
# directory keeps for it is listed (KEPT) until an operator forgets it.
run_admin forget --model digits
