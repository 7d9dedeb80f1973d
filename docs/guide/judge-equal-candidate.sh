#!/usr/bin/env bash
# Rolls the demo's version 2 (version 1's answers divided by a temperature: as fast, within a few
# percent) out against version 1 again and again, one caller in a loop, and prints each step's
# verdict and evidence: how often the rollout judge fails an equal candidate, by first step and
# latency margin. BENCHMARKS.md, "Rollouts judging an equal candidate".
#   docs/guide/judge-equal-candidate.sh [RUNS] > /tmp/judge.txt
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
runs=${1:-5}
port=${JUDGE_PORT:-19001}
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
mg() { "$repo/bin/modelgate" "$@"; }
admin() { mg admin --target "localhost:$((port + 2))" "$@"; }
cd "$work"
# Started directly (not through a function, whose subshell's pid the trap would stop instead of the server).
"$repo/bin/modelgate" serve --replica gw1 --grpc-port "$port" --metrics-port $((port + 1)) --admin-port $((port + 2)) >serve.log 2>&1 &
pid=$!
for _ in $(seq 1 240); do grep -q "serving KServe v2 gRPC" serve.log && break; sleep 0.5; done
mg infer --target "localhost:$port" --model cnn_mnist --every-digit --repeat 5000 >/dev/null
for step in 50 10; do
  for margin in 0 0.05; do
    for run in $(seq 1 "$runs"); do
      admin routes set --model cnn_mnist --weights 1=100 --reason reset >/dev/null
      admin rollout start --model cnn_mnist --baseline 1 --candidate 2 --steps "$step,100" --interval 10s \
        --min-samples 200 --latency-margin "$margin" >/dev/null
      timeout 12 "$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist --every-digit --repeat 1000000 >/dev/null 2>&1
      for _ in $(seq 1 20); do admin rollout status --model cnn_mnist | grep -q RUNNING || break; sleep 1; done
      out=$(admin rollout status --model cnn_mnist)
      verdict=$(echo "$out" | grep -oE ' (PROMOTE|ROLLBACK|ADVANCE) ' | tail -1)
      evidence=$(echo "$out" | grep -E 'evidence  samples' | tail -1 | sed 's/^ *evidence *//')
      stages=$(echo "$out" | grep -E 'queue p50' | tail -1 | sed 's/^ *//')
      echo "step=$step margin=$margin run=$run verdict=$verdict | $evidence | $stages"
    done
  done
done
