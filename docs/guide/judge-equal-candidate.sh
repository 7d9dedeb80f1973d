#!/usr/bin/env bash
# Rolls the demo's version 2 (version 1's answers divided by a temperature: as fast, within a few
# percent) out against version 1 again and again, one caller in a loop, and prints each step's
# verdict and evidence: how often the rollout judge fails an equal candidate, by first step,
# latency margin and control. BENCHMARKS.md, "Rollouts judging an equal candidate" and "A control
# for low steps".
#   docs/guide/judge-equal-candidate.sh [RUNS [CASE...]] > /tmp/judge.txt
# A CASE is STEP:MARGIN:CONTROL, CONTROL 0 (none), 3 (version 1's model file loaded again as
# version 3, from a folder of its own, for the whole run) or copy (the gateway's copy, loaded for
# each rollout and unloaded after it). Default cases: 50:0:0 50:0.05:0 10:0:0 10:0.05:0.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
# shellcheck source=docs/guide/show.sh
source "$repo/docs/guide/show.sh"
runs=${1:-5}
shift || true
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(50:0:0 50:0.05:0 10:0:0 10:0.05:0)
port=${JUDGE_PORT:-19001}
work=$(mktemp -d)
pid=""
trap 'stop_then_remove "$pid" "$work"' EXIT
mg() { "$repo/bin/modelgate" "$@"; }
admin() { mg admin --target "localhost:$((port + 2))" "$@"; }
cd "$work"
mg demo repo >/dev/null
# The control: version 1's model file as version 3 (loaded only where a case uses it).
if printf '%s\n' "${cases[@]}" | grep -q ':3$'; then
  mkdir repo/cnn_mnist/3 && cp repo/cnn_mnist/1/model.onnx repo/cnn_mnist/3/
fi
# Started directly (not through a function, whose subshell's pid the trap would stop instead of the server).
"$repo/bin/modelgate" serve --model-repository repo --replica gw1 --grpc-port "$port" --metrics-port $((port + 1)) \
  --admin-port $((port + 2)) >serve.log 2>&1 &
pid=$!
wait_serving serve.log
for v in 1 2 3; do
  [ -d "repo/cnn_mnist/$v" ] && mg infer --target "localhost:$port" --model cnn_mnist --version "$v" --every-digit --repeat 2000 >/dev/null
done
mg infer --target "localhost:$port" --model cnn_mnist --every-digit --repeat 5000 >/dev/null
for case in "${cases[@]}"; do
  IFS=: read -r step margin control <<<"$case"
  for run in $(seq 1 "$runs"); do
    admin routes set --model cnn_mnist --weights 1=100 --reason reset >/dev/null
    admin rollout start --model cnn_mnist --baseline 1 --candidate 2 --control "$control" --steps "$step,100" --interval 10s \
      --min-samples 200 --latency-margin "$margin" >/dev/null
    timeout 12 "$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist --every-digit --repeat 1000000 >/dev/null 2>&1
    for _ in $(seq 1 20); do admin rollout status --model cnn_mnist | grep -q RUNNING || break; sleep 1; done
    out=$(admin rollout status --model cnn_mnist)
    verdict=$(echo "$out" | grep -oE ' (PROMOTE|ROLLBACK|ADVANCE) ' | tail -1)
    evidence=$(echo "$out" | grep -E 'evidence  samples|^ +samples [0-9]' | tail -1 | sed 's/^ *evidence *//; s/^ *//')
    stages=$(echo "$out" | grep -E 'queue p50' | tail -1 | sed 's/^ *//')
    echo "step=$step margin=$margin control=$control run=$run verdict=$verdict | $evidence | $stages"
  done
done
