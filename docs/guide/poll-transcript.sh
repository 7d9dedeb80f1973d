#!/usr/bin/env bash
# Regenerates the outputs of "Polling the repository" in section 8 of docs/operators-guide.md:
# writes the demo repository, serves it with --repository-poll 2s, then changes the folder as a
# deployment would — a new version folder renamed in, a model file replaced by one that confuses
# two digits and then by a good one, a folder deleted while routing names it — and prints each
# command and what the server did ("$ cmd").
#   docs/guide/poll-transcript.sh > /tmp/poll.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
port=${GUIDE_POLL_PORT:-25201}
work=$(mktemp -d)
pid=""
trap 'stop_then_remove "$pid" "$work"' EXIT
# shellcheck source=docs/guide/show.sh
source docs/guide/show.sh
cd "$work"

"$repo/bin/modelgate" demo models >/dev/null
# Another copy of the demo, whose version 3 answers 3 for a 5: a bad file to deploy by mistake.
"$repo/bin/modelgate" demo faulty --faulty-version 3 >/dev/null
# (A 1 s inference warm-up, not the default 10 s: CI runs this script, and the warm-up only delays it.)
show serve --model-repository models --repository-poll 2s
"$repo/bin/modelgate" serve --warmup-inference 1s --model-repository models --repository-poll 2s --replica gw1 \
  --grpc-port "$port" --metrics-port $((port + 1)) --admin-port $((port + 2)) >serve.log 2>&1 &
pid=$!
wait_serving serve.log
admin() { "$repo/bin/modelgate" admin --target "localhost:$((port + 2))" "$@"; }
run_admin() { show admin "$@"; admin "$@" 2>&1 || true; echo; }
polled() {  # the poll's lines in the server log since line $1
  tail -n +"$1" serve.log | grep -E 'RepositoryPoll|VersionLoader|ModelRepository|GoldenSets' \
    | sed "s#$work/##g; s/^[0-9T:.+-]* //; s/ *$//" || true
}
# wait_log PATTERN FROM: waits up to 30 s for PATTERN in the server log from line FROM on (the poll
# looks every 2 s, and acts on a change once it has held still for one look).
wait_log() {
  for _ in $(seq 1 120); do tail -n +"$2" serve.log | grep -qE "$1" && return 0; sleep 0.25; done
  echo "the server did not log '$1' within 30 s" >&2; tail -n 20 serve.log >&2; exit 1
}
# replace_version_2 FILE LOGGED: renames a copy of FILE over version 2's model file, as a deployment
# would, then shows what the server logged once it logs LOGGED.
replace_version_2() {
  local mark to=models/cnn_mnist/2/model.onnx
  mark=$(($(wc -l <serve.log) + 1))
  echo "\$ cp $1 $to.new && mv $to.new $to"
  cp "$1" "$to.new" && mv "$to.new" "$to"
  wait_log "$2" "$mark"
  echo "\$ grep -E 'RepositoryPoll|VersionLoader|ModelRepository|GoldenSets' serve.log"
  polled "$mark"
  echo
}
# Every version has its golden score before the changes begin.
for _ in $(seq 1 60); do admin models 2>/dev/null | grep -qE "PENDING|RUNNING" || break; sleep 0.5; done

echo "## poll 1. a new version folder, copied beside the repository's and renamed in"
mark=$(($(wc -l <serve.log) + 1))
echo "\$ mkdir models/cnn_mnist/.3 && cp models/cnn_mnist/1/model.onnx models/cnn_mnist/.3/ && mv models/cnn_mnist/.3 models/cnn_mnist/3"
mkdir models/cnn_mnist/.3 && cp models/cnn_mnist/1/model.onnx models/cnn_mnist/.3/ && mv models/cnn_mnist/.3 models/cnn_mnist/3
wait_log "version 3: golden set" "$mark"
echo "\$ grep -E 'RepositoryPoll|VersionLoader|ModelRepository|GoldenSets' serve.log   # about 2 to 4 s later"
polled "$mark"
for _ in $(seq 1 40); do admin models 2>/dev/null | grep -qE "PENDING|RUNNING" || break; sleep 0.25; done
run_admin models

echo "## poll 2. version 2's file replaced by one that confuses 3 and 5: refused on its golden set"
replace_version_2 faulty/cnn_mnist/3/model.onnx "version 2 not loaded again"

echo "## poll 3. and by a good one: loaded again while it serves"
replace_version_2 models/cnn_mnist/1/model.onnx "version 2 reloaded"

echo "## poll 4. a folder deleted while routing names it"
run_admin routes set --model cnn_mnist --weights 1=100 --reason "v1 serves"
mark=$(($(wc -l <serve.log) + 1))
echo "\$ rm -r models/cnn_mnist/1"
rm -r models/cnn_mnist/1
wait_log "its folder has gone, but routing" "$mark"
echo "\$ grep -E 'RepositoryPoll|VersionLoader|ModelRepository|GoldenSets' serve.log"
polled "$mark"
echo "\$ curl -s localhost:8002/metrics | grep '^modelgate_repository_poll_waiting'"
curl -s "localhost:$((port + 1))/metrics" | grep '^modelgate_repository_poll_waiting'
echo
run_admin models
mark=$(($(wc -l <serve.log) + 1))
run_admin routes set --model cnn_mnist --weights 3=100 --reason "v3 serves"
wait_log "version 1 unloaded" "$mark"
echo "\$ grep -E 'RepositoryPoll|VersionLoader|ModelRepository|GoldenSets' serve.log"
polled "$mark"
echo
run_admin models
echo "\$ grep '\"caller\":\"repository poll\"' modelgate-state/audit.log"
grep '"caller":"repository poll"' modelgate-state/audit.log
echo
echo "\$ curl -s localhost:8002/metrics | grep '^modelgate_repository_poll'"
curl -s "localhost:$((port + 1))/metrics" | grep '^modelgate_repository_poll'
