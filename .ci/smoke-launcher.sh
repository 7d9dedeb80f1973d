#!/usr/bin/env bash
# Starts `bin/modelgate serve` on the embedded demo (JSON logs, every request in the access log),
# sends one request with `bin/modelgate infer`, and stops the server with SIGTERM. Fails if any
# step does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

port=18001
metrics=18002
log=$(mktemp)
logs=$(mktemp)
bin/modelgate serve --grpc-port "$port" --metrics-port "$metrics" --admin-port 18003 --state-dir "$(mktemp -d)" \
  --log-format json --access-log-rate 1 >"$log" 2>"$logs" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log" "$logs"' EXIT

for _ in $(seq 1 120); do
  grep -q "serving KServe v2 gRPC" "$log" && break
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$log" "$logs"; echo "smoke: the server exited early" >&2; exit 1
  fi
  sleep 0.5
done
grep -q "serving KServe v2 gRPC" "$log" || { cat "$log"; echo "smoke: no banner after 60 s" >&2; exit 1; }

# SMOKE_JAVA_FEATURE=25 (or later): the launcher gave that JDK its options (bin/jvm-options.sh).
if [ "${SMOKE_JAVA_FEATURE:-0}" -ge 25 ]; then
  tr '\0' ' ' </proc/"$pid"/cmdline | grep -q -- '-XX:+UseCompactObjectHeaders' ||
    { tr '\0' ' ' </proc/"$pid"/cmdline; echo "smoke: the launcher did not give JDK 25 its options" >&2; exit 1; }
fi

out=$(bin/modelgate infer --target "localhost:$port" --model cnn_mnist --digit 7)
echo "$out"
grep -q "model cnn_mnist version 2 answered" <<<"$out"
grep -qE "digit #7: label ([0-9]), predicted \1" <<<"$out"

# Health and metrics over HTTP, as a supervisor and a scraper see them.
curl -sf "http://localhost:$metrics/livez" | grep live >/dev/null
curl -sf "http://localhost:$metrics/readyz" | grep ready >/dev/null
curl -sf "http://localhost:$metrics/metrics" | grep 'modelgate_version_state{model="cnn_mnist",state="READY",version="2"} 1.0' >/dev/null

# The load generator against the running server, briefly: open loop unary, closed loop streaming.
bench_out=$(mktemp -d)
bin/modelgate-bench load --target "localhost:$port" --model cnn_mnist --rate 200 --warmup 1 --duration 2 --out "$bench_out"
bin/modelgate-bench load --target "localhost:$port" --model cnn_mnist --concurrency 4 --streaming --warmup 1 --duration 2 --out "$bench_out"
ls "$bench_out"/*.json "$bench_out"/*.hgrm >/dev/null
rm -rf "$bench_out"

kill -TERM "$pid"
wait "$pid" || true
grep -q '"formattedMessage":"stopped"' "$logs" || { cat "$log" "$logs"; echo "smoke: no clean stop" >&2; exit 1; }
# SMOKE_JAVA_FEATURE=N: the server must say it ran on Java N or later (its start-up line names the
# runtime); the log's every line a JSON object (below) also says that JDK warned of nothing.
if [ -n "${SMOKE_JAVA_FEATURE:-}" ]; then
  feature=$(grep -o '; Java [0-9]*' "$logs" | head -1 | tr -dc '0-9')
  [ -n "$feature" ] && [ "$feature" -ge "$SMOKE_JAVA_FEATURE" ] ||
    { cat "$logs"; echo "smoke: the server did not run on Java $SMOKE_JAVA_FEATURE or later (said: ${feature:-nothing})" >&2; exit 1; }
  echo "smoke: served on Java $feature"
fi
# --log-format json: every line one JSON object; the request is in the access log.
if grep -v '^{.*}$' "$logs"; then echo "smoke: a log line is not a JSON object" >&2; exit 1; fi
if command -v python3 >/dev/null; then
  python3 -c 'import json, sys; [json.loads(line) for line in open(sys.argv[1])]' "$logs"
fi
grep '"loggerName":"modelgate.access"' "$logs" | grep '"tenant":"anonymous"' | grep '"status":"OK"' >/dev/null ||
  { cat "$logs"; echo "smoke: no access log line for the request" >&2; exit 1; }
echo "smoke: launcher OK"
