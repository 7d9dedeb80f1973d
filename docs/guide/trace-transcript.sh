#!/usr/bin/env bash
# Regenerates the outputs of "Tracing calls across services" (section 18 of docs/operators-guide.md):
# starts a trace sink (bin/modelgate-bench trace-sink: an OTLP/HTTP receiver that prints each span),
# serves the demo with --trace-endpoint pointing at it, makes calls in a trace and out of one, and
# prints each command and what the sink received ("$ cmd").
#   docs/guide/trace-transcript.sh > /tmp/trace.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
port=${GUIDE_TRACE_PORT:-25301}
sink_port=$((port + 3))
work=$(mktemp -d)
pid=""
sink=""
grpc_sink=""
trap '[ -n "$sink" ] && kill "$sink" 2>/dev/null; [ -n "$grpc_sink" ] && kill "$grpc_sink" 2>/dev/null; stop_then_remove "$pid" "$work"' EXIT
# shellcheck source=docs/guide/show.sh
source docs/guide/show.sh
cd "$work"

echo "\$ bin/modelgate-bench trace-sink --port 4318 > sink.log &   # or an OpenTelemetry Collector's OTLP/HTTP receiver"
"$repo/bin/modelgate-bench" trace-sink --port "$sink_port" >sink.log 2>&1 &
sink=$!
for _ in $(seq 1 120); do grep -q "listening" sink.log && break; sleep 0.5; done
grep -q "listening" sink.log || { echo "the trace sink did not start" >&2; cat sink.log >&2; exit 1; }

"$repo/bin/modelgate" demo models >/dev/null
show serve --model-repository models --trace-endpoint http://127.0.0.1:4318 --access-log-rate 1
"$repo/bin/modelgate" serve --warmup-inference 1s --model-repository models --replica gw1 \
  --trace-endpoint "http://127.0.0.1:$sink_port" --access-log-rate 1 \
  --grpc-port "$port" --metrics-port $((port + 1)) --admin-port $((port + 2)) >serve.log 2>&1 &
pid=$!
wait_serving serve.log
infer() { show infer "$@"; "$repo/bin/modelgate" infer --target "localhost:$port" "$@" 2>&1 || true; echo; }

echo "## trace 1. a call in the caller's trace, and one in none"
infer --model cnn_mnist --digit 7 --trace
infer --model cnn_mnist --digit 7
# Spans are sent within a second of their calls' answers.
for _ in $(seq 1 40); do grep -q '^span ' sink.log && break; sleep 0.25; done
sleep 1.5
echo "\$ cat sink.log"
grep -E '^(trace sink:|span )' sink.log | sed "s/:$sink_port/:4318/"
echo
echo "\$ grep ' access - ' serve.log   # the access log (logger modelgate.access) names the trace of a call traced"
grep ' access - ' serve.log | sed 's/^[0-9T:.+-]* //' || true
echo
echo "\$ curl -s localhost:8002/metrics | grep '^modelgate_trace'"
curl -s "localhost:$((port + 1))/metrics" | grep '^modelgate_trace' || true
echo

admin() { show admin "$@"; "$repo/bin/modelgate" admin --target "localhost:$((port + 2))" "$@" 2>&1 || true; echo; }
echo "## trace 2. every call traced for a while, and a logger's level, from the admin API"
admin trace --sample-rate 1 --for 10m
infer --model cnn_mnist --digit 3
admin trace --restore
admin log --logger io.grpc --level DEBUG --for 30m
admin log --logger io.grpc --restore
for _ in $(seq 1 40); do [ "$(grep -c '^span ' sink.log)" -ge 4 ] && break; sleep 0.25; done
sleep 1.5
echo "\$ grep -c '^span ' sink.log   # the call in no trace, traced while the rate was 1, and its run of the model"
grep -c '^span ' sink.log || true
echo
echo "\$ grep -E 'SetTraceSampleRate|SetLogLevel' modelgate-state/audit.log | cut -c1-160"
grep -E 'SetTraceSampleRate|SetLogLevel' modelgate-state/audit.log | cut -c1-160 || true
echo

echo "## trace 3. over OTLP/gRPC, to a collector's port 4317"
echo "\$ bin/modelgate-bench trace-sink --protocol grpc --port 4317 > grpc-sink.log &"
"$repo/bin/modelgate-bench" trace-sink --protocol grpc --port $((port + 4)) >grpc-sink.log 2>&1 &
grpc_sink=$!
for _ in $(seq 1 120); do grep -q "listening" grpc-sink.log && break; sleep 0.5; done
grep -q "listening" grpc-sink.log || { echo "the gRPC trace sink did not start" >&2; cat grpc-sink.log >&2; exit 1; }
# The server of sections 1 and 2 stops; one sending over gRPC takes its ports.
kill "$pid"; wait "$pid" 2>/dev/null || true
show serve --model-repository models --trace-endpoint http://127.0.0.1:4317 --trace-protocol grpc
"$repo/bin/modelgate" serve --warmup-inference 1s --model-repository models --replica gw1 \
  --trace-endpoint "http://127.0.0.1:$((port + 4))" --trace-protocol grpc \
  --grpc-port "$port" --metrics-port $((port + 1)) --admin-port $((port + 2)) >serve-grpc.log 2>&1 &
pid=$!
wait_serving serve-grpc.log "the server sending spans over gRPC"
infer --model cnn_mnist --digit 4 --trace
for _ in $(seq 1 40); do [ "$(grep -c '^span ' grpc-sink.log)" -ge 2 ] && break; sleep 0.25; done
echo "\$ cat grpc-sink.log"
grep -E '^(trace sink:|span )' grpc-sink.log | sed "s/:$((port + 4))/:4317/"
