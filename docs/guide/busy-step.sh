#!/usr/bin/env bash
# A rollout step judged under open-loop load: the demo's version 2 at 10% against version 1 while
# `modelgate-bench load` sends RATE calls a second for the whole step, then the rollout's status —
# how many samples each version was judged on and over what span of the step.
# BENCHMARKS.md, "A busy step judged over all of it".
#   docs/guide/busy-step.sh [RATE] [INTERVAL_SECONDS] > /tmp/busy-step.txt
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
# shellcheck source=docs/guide/show.sh
source "$repo/docs/guide/show.sh"
rate=${1:-4000}
interval=${2:-30}
port=${JUDGE_PORT:-19011}
work=$(mktemp -d)
pid=""
trap 'stop_then_remove "$pid" "$work"' EXIT
admin() { "$repo/bin/modelgate" admin --target "localhost:$((port + 2))" "$@"; }
cd "$work"
# Started directly (not through a function, whose subshell's pid the trap would stop instead of the server).
"$repo/bin/modelgate" serve --replica gw1 --grpc-port "$port" --metrics-port $((port + 1)) --admin-port $((port + 2)) >serve.log 2>&1 &
pid=$!
wait_serving serve.log
# Both versions warmed, then version 1 alone, as before a rollout.
for v in 1 2; do
  "$repo/bin/modelgate-bench" load --target "localhost:$port" --model cnn_mnist --version "$v" --rate "$rate" \
    --warmup 0 --duration 10 >/dev/null 2>&1
done
admin routes set --model cnn_mnist --weights 1=100 --reason "before the rollout" >/dev/null
admin rollout start --model cnn_mnist --baseline 1 --candidate 2 --steps 10,100 --interval "${interval}s" \
  --min-samples 200 >/dev/null
"$repo/bin/modelgate-bench" load --target "localhost:$port" --model cnn_mnist --rate "$rate" --warmup 0 \
  --duration $((interval + 8)) 2>&1 | tail -3
admin rollout status --model cnn_mnist
