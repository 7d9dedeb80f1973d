#!/usr/bin/env bash
# Measures what loading a serving version again costs its callers: serves the demo, then for each
# of N rounds runs `modelgate-bench load` (16 callers on cnn_mnist version 2, closed loop, 20 s)
# twice on the same server — once alone, once with `admin load --version 2 --reload` every 4 s
# (5 reloads) — after one unrecorded run, and prints each run's summary line (req/s, p50 ... max, errors).
#   docs/guide/reload-under-load.sh [N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

rounds=${1:-3}
port=${RELOAD_PORT:-28061}
admin_port=$((port + 2))
repo=$(pwd)
# shellcheck source=docs/guide/show.sh
source docs/guide/show.sh
work=$(mktemp -d)
log=$work/serve.log
"$repo/bin/modelgate" serve --warmup-inference 10s --grpc-port "$port" --admin-port "$admin_port" \
  --metrics-port "$((port + 1))" --state-dir "$work/state" >"$log" 2>&1 &
pid=$!
trap 'stop_then_remove "$pid" "$work"' EXIT
wait_serving "$log"

bench() {
  "$repo/bin/modelgate-bench" load --target "localhost:$port" --model cnn_mnist --version 2 --concurrency 16 \
    --warmup 2 --duration 20 --label "$1" 2>&1 | tail -n 1
}
# The server's JIT settles first (one unrecorded run): the rounds then compare like with like.
bench "settling" >/dev/null
for round in $(seq 1 "$rounds"); do
  echo "round $round"
  bench "alone"
  ( sleep 4; for _ in 1 2 3 4 5; do
      "$repo/bin/modelgate" admin --target "localhost:$admin_port" --token-file "$work/state/admin-token" load --model cnn_mnist --version 2 --reload >/dev/null
      sleep 4
    done ) &
  reloads=$!
  bench "5 reloads"
  wait "$reloads"
done
echo "reloads logged: $(grep -c "version 2 reloaded: the load before drained and closed" "$log")"
