#!/usr/bin/env bash
# Regenerates the output of the operator's guide's "A control for low steps" (section 5): serves
# the demo and rolls version 2 out at a 10% first step judged against a control that the gateway
# makes itself (`--control copy`: version 1's model loaded again as version 3), one caller in a
# loop; then shows the copy unloaded once the rollout has ended.
#   docs/guide/control-transcript.sh > /tmp/control.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

port=${CONTROL_PORT:-28031}
admin_port=$((port + 2))
metrics_port=$((port + 1))
repo=$(pwd)
work=$(mktemp -d)
log=$work/serve.log
cd "$work"
mg() { "$repo/bin/modelgate" "$@"; }
admin() { "$repo/bin/modelgate" admin --target "localhost:$admin_port" "$@"; }
# shellcheck source=docs/guide/show.sh
source "$repo/docs/guide/show.sh"
run_admin() { show admin "$@"; admin "$@" || true; echo; }

echo "\$ bin/modelgate serve"
# (A 1 s inference warm-up, not the default 10 s: CI runs this script, and the warm-up only delays it.)
"$repo/bin/modelgate" serve --warmup-inference 1s --grpc-port "$port" --admin-port "$admin_port" \
  --metrics-port "$metrics_port" --replica gw1 >"$log" 2>&1 &
pid=$!
trap 'stop_then_remove "$pid" "$work"' EXIT
wait_serving "$log"
grep -E '^  cnn_mnist ' "$log"
# Each version's first calls, before any is judged.
for v in 1 2; do
  mg infer --target "localhost:$port" --model cnn_mnist --version "$v" --every-digit --repeat 1000 >/dev/null
done
run_admin routes set --model cnn_mnist --weights 1=100 --reason "before the rollout"
run_admin rollout start --model cnn_mnist --baseline 1 --candidate 2 --control copy --steps 10,100 --interval 10s --min-samples 200
run_admin models
echo "\$ bin/modelgate infer --model cnn_mnist --every-digit --repeat 1000000     # 10 s, one caller"
timeout 12 "$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist --every-digit --repeat 1000000 >/dev/null 2>&1 || true
# The step is judged once it has lasted its 10 s (later on a busy machine): wait for the decision.
# A machine too busy for the caller to bring each arm its 200 samples in 10 s gets more calls,
# 5 s at a time, while the rollout says it waits for samples.
for _ in $(seq 1 60); do
  status=$(admin rollout status --model cnn_mnist 2>/dev/null || true)
  grep "candidate v2 against baseline v1, RUNNING" <<<"$status" >/dev/null || break
  if grep "waiting for samples" <<<"$status" >/dev/null; then
    timeout 5 "$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist --every-digit --repeat 1000000 \
      >/dev/null 2>&1 || true
  else
    sleep 1
  fi
done
run_admin rollout status --model cnn_mnist
# The copy goes within a second of the rollout's end (on every replica): wait for it.
for _ in $(seq 1 30); do
  admin models 2>/dev/null | grep -E '^cnn_mnist +3 +UNAVAILABLE' >/dev/null && break
  sleep 1
done
run_admin models
