#!/usr/bin/env bash
# Regenerates the outputs of the "callers and chargeback" section of docs/operators-guide.md: makes
# two API keys, writes a callers file (a tenant limited to one model and 20 requests a second,
# another without limits), serves the demo with it, runs the section's commands in order, then serves
# it again over TLS with optional client certificates and names a mesh namespace's workloads a tenant,
# printing each command and its output ("$ cmd").
#   docs/guide/callers-transcript.sh > /tmp/callers.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$(pwd)
port=${GUIDE_CALLERS_PORT:-26001}
work=$(mktemp -d)
pid=""
trap 'stop_then_remove "$pid" "$work"' EXIT
# shellcheck source=docs/guide/show.sh
source docs/guide/show.sh
cd "$work"

echo "## callers 1. keys and the callers file"
show callers new-key --tenant fraud
"$repo/bin/modelgate" callers new-key --tenant fraud | tee fraud.txt
echo
"$repo/bin/modelgate" callers new-key --tenant search >search.txt
fraud_key=$(sed -n 's/^key: *//p' fraud.txt)
search_key=$(sed -n 's/^key: *//p' search.txt)
cat >callers.yaml <<YAML
# Who may call the inference port; read again when it changes.
tenants:
  fraud:
    api_keys: [$(sed -n 's/^hash: *//p' fraud.txt)]
    models: [cnn_mnist]
    quota: {requests_per_second: 20}
  search:
    api_keys: [$(sed -n 's/^hash: *//p' search.txt)]
YAML
echo "\$ cat callers.yaml"
cat callers.yaml
echo
# A read-only admin token for a dashboard.
"$repo/bin/modelgate" callers new-key --tenant grafana --admin-role viewer >grafana.txt
sed -n 's/^key: *//p' grafana.txt >grafana.token
printf 'tokens:\n  grafana: {hash: %s, role: viewer}\n' "$(sed -n 's/^hash: *//p' grafana.txt)" >admin-tokens.yaml
# (A 1 s inference warm-up, not the default 10 s: CI runs this script, and the warm-up only delays it.)
"$repo/bin/modelgate" serve --warmup-inference 1s --callers callers.yaml --admin-tokens admin-tokens.yaml --replica gw1 --access-log-rate 0.05 --grpc-port "$port" --metrics-port $((port + 1)) \
  --admin-port $((port + 2)) --state-dir state >serve.log 2>&1 &
pid=$!
wait_serving serve.log
infer() { show infer "$@"; "$repo/bin/modelgate" infer --target "localhost:$port" "$@" 2>&1 | sed "s/$fraud_key/\$FRAUD_KEY/g; s/$search_key/\$SEARCH_KEY/g" || true; echo; }

echo "## callers 2. who may call"
infer --model cnn_mnist --digit 7
echo "\$ bin/modelgate infer --model cnn_mnist --digit 7 --api-key wrong-key"
"$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist --digit 7 --api-key wrong-key 2>&1 || true
echo
echo "\$ bin/modelgate infer --model cnn_mnist --digit 7 --api-key \$FRAUD_KEY"
"$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist --digit 7 --api-key "$fraud_key" 2>&1 | tail -n 1
echo

echo "## callers 3. a quota"
echo "\$ bin/modelgate infer --model cnn_mnist --every-digit --repeat 100 --api-key \$FRAUD_KEY"
"$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist --every-digit --repeat 100 --api-key "$fraud_key" 2>&1 | tail -n 2 || true
echo "\$ bin/modelgate infer --model cnn_mnist --every-digit --repeat 300 --api-key \$SEARCH_KEY"
"$repo/bin/modelgate" infer --target "localhost:$port" --model cnn_mnist --every-digit --repeat 300 --api-key "$search_key" 2>&1 | tail -n 2
echo

echo "## callers 4. usage"
admin() { show admin "$@"; "$repo/bin/modelgate" admin --target "localhost:$((port + 2))" --state-dir state "$@" 2>&1 || true; echo; }
admin usage --since "$(date -u +%Y-%m-%d)"
admin usage --since "$(date -u +%Y-%m-%d)" --format csv
show admin access
"$repo/bin/modelgate" admin --target "localhost:$((port + 2))" --state-dir state access 2>&1 | sed "s|$work/||" || true
echo
show admin --token-file grafana.token usage --since "$(date -u +%Y-%m-%d)" --tenant search
"$repo/bin/modelgate" admin --target "localhost:$((port + 2))" --token-file grafana.token usage --since "$(date -u +%Y-%m-%d)" --tenant search 2>&1 || true
echo
show admin --token-file grafana.token routes set --model cnn_mnist --weights 1=100
"$repo/bin/modelgate" admin --target "localhost:$((port + 2))" --token-file grafana.token routes set --model cnn_mnist --weights 1=100 2>&1 || true
echo
echo "\$ curl -s localhost:8002/metrics | grep -E '^modelgate_usage_(requests|rows|compute)' | grep -v ' 0.0\$'"
curl -s "localhost:$((port + 1))/metrics" | grep -E '^modelgate_usage_(requests|rows|compute)' | grep -v ' 0.0$' | sort
echo "\$ ls state/usage/"
ls state/usage/
echo "\$ grep ' access - ' serve.log | tail -n 2"
grep ' access - ' serve.log | tail -n 2 || true
echo

echo "## callers 5. access through the admin API"
admin quota set fraud --requests-per-second 50 --in-flight 8
admin quota set fraud --weight 3
admin quota set fraud --requests-per-second 0 --weight 3
show admin token create ci-bot --role operator
"$repo/bin/modelgate" admin --target "localhost:$((port + 2))" --state-dir state token create ci-bot --role operator 2>&1 \
  | sed -E 's/mga_[A-Za-z0-9_-]+/mga_(secret, shown once)/' | tee token.txt || true
echo
show admin token revoke ci-bot
"$repo/bin/modelgate" admin --target "localhost:$((port + 2))" --state-dir state token revoke ci-bot 2>&1 | sed "s|$work/||" || true
echo
admin quota clear fraud
show admin --token-file grafana.token token create sneaky --role admin
"$repo/bin/modelgate" admin --target "localhost:$((port + 2))" --token-file grafana.token token create sneaky --role admin 2>&1 || true
echo
echo "\$ grep -E 'CreateToken|RevokeToken|SetQuota' state/audit.log | cut -c1-160"
grep -E 'CreateToken|RevokeToken|SetQuota' state/audit.log | cut -c1-160
echo

echo "## callers 6. when to retry"
admin quota set fraud --requests-per-second 5
"$repo/bin/modelgate-bench" load --target "localhost:$port" --model cnn_mnist --api-key "$search_key" --write-grpc-frame row.grpc >/dev/null 2>&1
echo "\$ bin/modelgate-bench load --model cnn_mnist --api-key \$SEARCH_KEY --write-grpc-frame row.grpc   # one request, framed for curl"
echo "\$ for i in \$(seq 20); do curl -s -v --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \\"
echo "    -H \"authorization: Bearer \$FRAUD_KEY\" --data-binary @row.grpc \\"
echo "    http://localhost:8001/inference.GRPCInferenceService/ModelInfer -o /dev/null 2>&1 | grep -E '^< grpc-(status|message|retry)'; done | grep -m1 -A2 retry"
for _ in $(seq 20); do
  curl -s -v --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $fraud_key" \
    --data-binary @row.grpc "http://localhost:$port/inference.GRPCInferenceService/ModelInfer" -o /dev/null 2>&1 \
    | grep -E '^< grpc-(status|message|retry)' || true
done | grep -m1 -A2 retry || true
echo
admin quota clear fraud

echo "## callers 7. services named by their certificates"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=""
# A mesh's CA; the gateway's certificate; a workload's, named by its SPIFFE ID (subject O=SPIRE, as
# SPIRE issues them); and one from the same CA that the callers file does not list.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj /CN=example-mesh-ca 2>/dev/null
issue() {  # issue NAME SUBJECT SUBJECT-ALT-NAME
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf 'subjectAltName=%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
issue server /CN=localhost DNS:localhost,IP:127.0.0.1
issue scorer /O=SPIRE URI:spiffe://example.org/ns/fraud/sa/scorer
issue stranger "/O=Elsewhere/CN=stranger" URI:spiffe://other.example/ns/x/sa/y
cat >>callers.yaml <<YAML
  risk:
    certificates: ["uri:spiffe://example.org/ns/fraud/*"]   # every workload of the mesh's fraud namespace
YAML
echo "\$ tail -n 2 callers.yaml"
tail -n 2 callers.yaml
echo "\$ openssl x509 -in scorer.pem -noout -subject -nameopt RFC2253 -ext subjectAltName"
openssl x509 -in scorer.pem -noout -subject -nameopt RFC2253 -ext subjectAltName
"$repo/bin/modelgate" serve --warmup-inference 1s --callers callers.yaml --tls-cert server.pem --tls-key server.key --tls-client-ca ca.pem \
  --tls-client-auth optional --replica gw1 --grpc-port "$port" --metrics-port $((port + 1)) --admin-port $((port + 2)) --state-dir state \
  >serve-tls.log 2>&1 &
pid=$!
wait_serving serve-tls.log
echo "\$ bin/modelgate serve --callers callers.yaml --tls-cert server.pem --tls-key server.key --tls-client-ca ca.pem --tls-client-auth optional --replica gw1"
echo
tls_infer() { show infer --tls-ca ca.pem "$@"; "$repo/bin/modelgate" infer --target "localhost:$port" --tls-ca ca.pem "$@" 2>&1 || true; echo; }
tls_infer --tls-cert scorer.pem --tls-key scorer.key --model cnn_mnist --digit 7
tls_infer --tls-cert stranger.pem --tls-key stranger.key --model cnn_mnist --digit 7
echo "\$ bin/modelgate infer --tls-ca ca.pem --api-key \$SEARCH_KEY --model cnn_mnist --digit 7   # no certificate"
"$repo/bin/modelgate" infer --target "localhost:$port" --tls-ca ca.pem --api-key "$search_key" --model cnn_mnist --digit 7 2>&1 \
  | tail -n 1 || true
echo
admin usage --since "$(date -u +%Y-%m-%d)" --tenant risk
