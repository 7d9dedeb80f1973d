# Sourced by the guide's transcripts: prints a command as an operator types it ("$ bin/modelgate
# ..."), without the test ports, quoting what has spaces.
show() {
  local shown="" arg
  for arg in "$@"; do
    if [[ "$arg" == *" "* ]]; then shown+=" \"$arg\""; else shown+=" $arg"; fi
  done
  echo "\$ bin/modelgate${shown}"
}
