#!/usr/bin/env bash
# Regenerates the outputs of the "TLS certificates renewed without a restart" section of
# docs/operators-guide.md: makes a CA and three server certificates with openssl, serves the demo
# over TLS with the first, renews it by renaming new files over the old ones, tries a renewal whose
# key belongs to another certificate, and prints each command and its output ("$ cmd").
#   docs/guide/tls-transcript.sh > /tmp/tls.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
port=${GUIDE_TLS_PORT:-26101}
work=$(mktemp -d)
pid=""
trap 'stop_then_remove "$pid" "$work"' EXIT
# shellcheck source=docs/guide/show.sh
source docs/guide/show.sh
cd "$work"

# A CA, and certificates for localhost from it: one expiring in 5 days, its renewal for 90 days,
# and one more whose key goes astray.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 365 \
  -subj /CN=example-ca 2>/dev/null
issue() {  # issue NAME DAYS
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj /CN=localhost 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$2" -extfile san.ext -out "$1.pem" 2>/dev/null
}
issue current 5
issue renewed 90
issue other 90
mkdir tls
cp current.pem tls/tls.crt
cp current.key tls/tls.key
# (A 1 s inference warm-up, not the default 10 s: CI runs this script, and the warm-up only delays it.)
"$repo/bin/modelgate" serve --warmup-inference 1s --tls-cert tls/tls.crt --tls-key tls/tls.key --grpc-port "$port" --metrics-port $((port + 1)) \
  --admin-port $((port + 2)) --state-dir state >serve.log 2>&1 &
pid=$!
wait_serving serve.log
expiry() {
  echo "\$ curl -s localhost:8002/metrics | grep tls_certificate_expiry"
  curl -s "localhost:$((port + 1))/metrics" | grep '^modelgate_tls_certificate_expiry'
  date -u -d "@$(curl -s "localhost:$((port + 1))/metrics" | awk '/^modelgate_tls_certificate_expiry_timestamp_seconds\{port="inference"\}/ {printf "%d", $2}')" \
    '+# that is %Y-%m-%dT%H:%M:%SZ'
}
infer() {
  show infer --tls-ca ca.pem "$@"
  "$repo/bin/modelgate" infer --target "localhost:$port" --tls-ca ca.pem "$@" 2>&1 | tail -n 1
}
watched() {  # the server's log lines about its TLS files since the last call
  grep -E 'TLS' serve.log | sed "s#$work/##g; s/^[0-9T:.+-]* //; s/ *$//" | tail -n +"$1"
}

echo "## tls 1. serving a certificate that expires in 5 days"
echo "\$ grep TLS serve.log"
watched 1
expiry
infer --model cnn_mnist --digit 7
echo

echo "## tls 2. the renewal: new files renamed over the old ones"
echo "\$ cp renewed.pem tls/tls.crt.new && mv tls/tls.crt.new tls/tls.crt"
cp renewed.pem tls/tls.crt.new && mv tls/tls.crt.new tls/tls.crt
echo "\$ cp renewed.key tls/tls.key.new && mv tls/tls.key.new tls/tls.key"
cp renewed.key tls/tls.key.new && mv tls/tls.key.new tls/tls.key
for _ in $(seq 1 40); do grep -q "read again" serve.log && break; sleep 0.25; done
# The key may have been read a moment after the certificate: then one check saw them mismatched.
echo "\$ grep 'TLS \\[' serve.log | tail -n 1"
watched 2 | tail -n 1
expiry
infer --model cnn_mnist --digit 7
echo

echo "## tls 3. a renewal that cannot be used"
before=$(grep -c "cannot be used" serve.log || true)
echo "\$ cp other.pem tls/tls.crt.new && mv tls/tls.crt.new tls/tls.crt    # and no new key"
cp other.pem tls/tls.crt.new && mv tls/tls.crt.new tls/tls.crt
for _ in $(seq 1 40); do [ "$(grep -c "cannot be used" serve.log || true)" -gt "$before" ] && break; sleep 0.25; done
echo "\$ grep 'TLS \\[' serve.log | tail -n 1"
watched 2 | tail -n 1
echo "\$ curl -s localhost:8002/metrics | grep reload_failures"
curl -s "localhost:$((port + 1))/metrics" | grep '^modelgate_config_reload_failures'
expiry
infer --model cnn_mnist --digit 7
