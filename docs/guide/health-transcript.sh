#!/usr/bin/env bash
# Regenerates the outputs of the model-health section of docs/operators-guide.md: writes the demo
# repository with a faulty version 3 (`modelgate demo --faulty-version 3`), serves it, and runs the
# section's commands in order, printing each command and its output ("$ cmd").
#   docs/guide/health-transcript.sh > /tmp/health.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
port=${GUIDE_HEALTH_PORT:-25001}
work=$(mktemp -d)
pid=""
trap 'stop_then_remove "$pid" "$work"' EXIT
# shellcheck source=docs/guide/show.sh
source docs/guide/show.sh
cd "$work"

show demo models --faulty-version 3
"$repo/bin/modelgate" demo models --faulty-version 3
echo
# A payload log of one request in ten, without the images.
printf 'payload_log:\n  sample_rate: 0.1\n  drop: [input_image]\n' >>models/cnn_mnist/model.yaml
echo "\$ cat models/cnn_mnist/model.yaml"
cat models/cnn_mnist/model.yaml
echo
# (A 1 s inference warm-up, not the default 10 s: CI runs this script, and the warm-up only delays it.)
"$repo/bin/modelgate" serve --warmup-inference 1s --model-repository models --replica gw1 --grpc-port "$port" \
  --metrics-port $((port + 1)) --admin-port $((port + 2)) >serve.log 2>&1 &
pid=$!
wait_serving serve.log
admin() { "$repo/bin/modelgate" admin --target "localhost:$((port + 2))" "$@"; }
# Each version runs the golden set once it is READY: wait until all three have their score.
for _ in $(seq 1 60); do
  admin models 2>/dev/null | grep -E "PENDING|RUNNING" >/dev/null || break
  sleep 1
done

run_admin() { show admin "$@"; admin "$@" 2>&1 || true; echo; }

echo "## health 1. every version's golden score"
run_admin models
run_admin validate --model cnn_mnist --version 3

echo "## health 1b. a reload that would serve a less accurate file"
# Version 3's file (two digits swapped) written over version 2's, as a botched deploy would.
cp models/cnn_mnist/2/model.onnx "$work/v2.onnx"
echo "\$ cp models/cnn_mnist/3/model.onnx models/cnn_mnist/2/model.onnx.new && mv models/cnn_mnist/2/model.onnx.new models/cnn_mnist/2/model.onnx"
cp models/cnn_mnist/3/model.onnx models/cnn_mnist/2/model.onnx.new && mv models/cnn_mnist/2/model.onnx.new models/cnn_mnist/2/model.onnx
run_admin load --model cnn_mnist --version 2 --reload
cp "$work/v2.onnx" models/cnn_mnist/2/model.onnx

echo "## health 2. a rollout to a less accurate candidate"
run_admin routes set --model cnn_mnist --weights 1=100 --reason "v1 serves; v3 is the candidate"
run_admin rollout start --model cnn_mnist --baseline 1 --candidate 3 --steps 10,50,100 --interval 60s

echo "## health 3. a shadow phase"
run_admin rollout start --model cnn_mnist --baseline 1 --candidate 3 --steps 10,50,100 --interval 10s --min-samples 100 \
  --max-accuracy-drop 0.2 --shadow-agreement 0.99
show infer --model cnn_mnist --digit 8 --repeat 20
"$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist --digit 8 --repeat 20 | tail -n 2
show infer --model cnn_mnist --digit 7 --repeat 100
"$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist --digit 7 --repeat 100 | tail -n 2
echo
for _ in $(seq 1 60); do
  admin rollout status --model cnn_mnist 2>/dev/null | grep "baseline v1, RUNNING" >/dev/null || break
  sleep 1
done
run_admin rollout status --model cnn_mnist
run_admin stats --model cnn_mnist --version 3 --window 1m

echo "## health 4. payload log"
echo "\$ ls modelgate-state/payloads/cnn_mnist/ && wc -l < modelgate-state/payloads/cnn_mnist/payloads.jsonl"
ls modelgate-state/payloads/cnn_mnist/ && wc -l <modelgate-state/payloads/cnn_mnist/payloads.jsonl
echo "\$ tail -n 1 modelgate-state/payloads/cnn_mnist/payloads.jsonl"
tail -n 1 modelgate-state/payloads/cnn_mnist/payloads.jsonl
echo

echo "## health 5. drift"
infer() { show infer --model cnn_mnist "$@"; "$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist "$@" | tail -n 2; echo; }
# Version 2 takes no traffic so far: what it sees now is all its 1m window holds.
infer --version 2 --every-digit --repeat 620
run_admin drift --model cnn_mnist --version 2
infer --version 2 --every-digit --invert --repeat 620
run_admin drift --model cnn_mnist --version 2
run_admin drift baseline --model cnn_mnist --version 2 --window 1m
# A reload (an edited model.yaml, a replaced file) keeps the profile: windows and reference.
run_admin load --model cnn_mnist --version 2 --reload
run_admin drift --model cnn_mnist --version 2

echo "## health 6. metrics"
echo "\$ curl -s localhost:8002/metrics | grep -E '^modelgate_(golden|shadow_comparisons|payload_log|drift_drifted)' | grep -v ' 0.0\$'"
curl -s "localhost:$((port + 1))/metrics" | grep -E '^modelgate_(golden|shadow_comparisons|payload_log|drift_drifted)' | grep -v ' 0.0$' | sort
