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
