# Sourced by the guide's scripts. show: prints a command as an operator types it ("$ bin/modelgate
# ..."), without the test ports, quoting what has spaces.
show() {
  local shown="" arg
  for arg in "$@"; do
    if [[ "$arg" == *" "* ]]; then shown+=" \"$arg\""; else shown+=" $arg"; fi
  done
  echo "\$ bin/modelgate${shown}"
}

# wait_serving LOG [WHAT]: waits up to 120 s for the server logging to LOG to serve; if it does not,
# says so with the log's last lines and exits.
wait_serving() {
  local _
  for _ in $(seq 1 240); do
    grep -q "serving KServe v2 gRPC" "$1" && return 0
    sleep 0.5
  done
  echo "${2:-the server} did not start within 120 s:" >&2
  tail -n 30 "$1" >&2
  exit 1
}

# start_etcd PORT DIR: starts a one-member etcd serving clients on loopback PORT (its peers on
# PORT+1), its data and log in DIR; sets etcd_pid and adds it to the caller's pids array; waits up
# to 10 s for it to answer, else says so with its log and exits. (Debian: etcd-server.)
start_etcd() {
  etcd --name guide --data-dir "$2/etcd" --listen-client-urls "http://127.0.0.1:$1" \
    --advertise-client-urls "http://127.0.0.1:$1" --listen-peer-urls "http://127.0.0.1:$(($1 + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(($1 + 1))" \
    --initial-cluster "guide=http://127.0.0.1:$(($1 + 1))" --log-level error >>"$2/etcd.log" 2>&1 &
  etcd_pid=$!
  pids+=("$etcd_pid")
  local _
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.1; done
  echo "etcd did not start" >&2; cat "$2/etcd.log" >&2; exit 1
}

# with_cleanup: makes the temporary folder $work and the list pids of processes to stop; on exit,
# stops them (the servers first, then etcd: replicas leave the fleet as they would in production)
# and removes $work — first copying its logs (*.log) into $GUIDE_KEEP_LOGS, where that names a
# folder: to read what the servers logged while a transcript ran.
with_cleanup() {
  work=$(mktemp -d)
  pids=()
  trap 'stop_all; keep_logs; rm -rf "$work"' EXIT
}

stop_all() {
  local p
  for p in "${pids[@]}"; do
    [ "$p" = "${etcd_pid:-}" ] || kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    [ "$p" = "${etcd_pid:-}" ] || wait "$p" 2>/dev/null || true
  done
  [ -z "${etcd_pid:-}" ] || kill "$etcd_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}

# keep_earlier_log FILE: moves a server's log of an earlier run aside (FILE.before-K.log), so that
# a server started again on the same name neither overwrites it nor is found serving by its lines.
keep_earlier_log() {
  local k=1
  [ -f "$1" ] || return 0
  while [ -f "${1%.log}.before-$k.log" ]; do k=$((k + 1)); done
  mv "$1" "${1%.log}.before-$k.log"
}

keep_logs() {
  if [ -n "${GUIDE_KEEP_LOGS:-}" ]; then
    mkdir -p "$GUIDE_KEEP_LOGS" && find "$work" -maxdepth 2 -name '*.log' -exec cp {} "$GUIDE_KEEP_LOGS/" \; || true
  fi
}

# stop_then_remove PID DIR: stops the server PID (if any) and waits for it to exit — it writes its
# state and usage as it stops — then removes DIR (its logs kept as with_cleanup's). For a script's
# EXIT trap.
stop_then_remove() {
  if [ -n "$1" ]; then
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
  work=$2 keep_logs
  rm -rf "$2"
}

# start_replica N BASE ETCD_PORT [ARGS...]: starts replica rN of `bin/modelgate serve` (with a 1 s
# inference warm-up) sharing the etcd on loopback ETCD_PORT, listening on BASE+10N+1 (gRPC), +2
# (metrics) and +3 (admin), its admin token $work/token, its state and log (rN.log) in $work; adds
# it to pids and sets replica_pid[N]. ARGS go to serve. A replica started again keeps the log of
# its run before as rN.before-K.log (read with the rest).
start_replica() {
  local n=$1 p=$(($2 + 10 * $1)) etcd=$3
  shift 3
  keep_earlier_log "$work/r$n.log"
  bin/modelgate serve --warmup-inference 1s --replica "r$n" --control-store "etcd://127.0.0.1:$etcd" \
    --grpc-port $((p + 1)) --metrics-port $((p + 2)) --admin-port $((p + 3)) \
    --admin-token-file "$work/token" --state-dir "$work/state-r$n" "$@" >"$work/r$n.log" 2>&1 &
  pids+=("$!")
  replica_pid[n]=$!
}
