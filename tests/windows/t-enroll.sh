#!/usr/bin/env bash
# Enrollment on Windows (issue 12): the x64 collector, installed with the CA and a site secret
# only, makes its key, enrolls at a real `tlsgate enroll serve` (native, on loopback), serves the
# certificate it was issued and is pulled with it; `enroll` again finds the certificate there; a
# wrong secret is refused (exit 3) and leaves no certificate.
set -u
. "$TLSGATE_SOURCE_ROOT/tests/windows/lib.sh"
tmp="$TLSGATE_WIN_TMP"
certs="$TLSGATE_CERTS"
exe="$TLSGATE_WIN_EXE"
host=wine-enroll.test
winq() { winepath -w "$1" | sed 's/\\/\\\\/g'; }
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

eport=$(free_port)
cport=$(free_port)
t=("$TLSGATE_BUILD/orchestrator/tlsgate" --db "$tmp/t.db" --config "$tmp/orch.json")
cat >"$tmp/orch.json" <<JSON
{"tls": {"ca": "$certs/ca.pem", "cert": "$certs/orchestrator.pem", "key": "$certs/orchestrator.key"},
 "enroll": {"ca_cert": "$certs/ca.pem", "ca_key": "$certs/ca.key", "cert": "$certs/localhost.pem",
            "key": "$certs/localhost.key", "listen": "127.0.0.1:$eport"}}
JSON
printf 'name,site,roles,collector,os\n%s,PS1,,127.0.0.1:%s,\n' "$host" "$cport" >"$tmp/inv.csv"
if ! "${t[@]}" init >"$tmp/orch.log" 2>&1 ||
    ! "${t[@]}" inventory import "$tmp/inv.csv" >>"$tmp/orch.log" 2>&1 ||
    ! "${t[@]}" enroll secret --site PS1 --json >"$tmp/secret.json" 2>>"$tmp/orch.log"; then
    echo "FAIL: enroll-setup: $(oneline "$tmp/orch.log")"
    exit 0
fi
python3 -c 'import json, sys; sys.stdout.write(json.load(open(sys.argv[1]))["secret"])' \
    "$tmp/secret.json" >"$tmp/site.secret"
echo "not the secret" >"$tmp/wrong.secret"

"${t[@]}" enroll serve 2>"$tmp/serve.err" &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null' EXIT
for _ in $(seq 1 100); do
    grep -q "listening on https://" "$tmp/serve.err" && break
    sleep 0.1
done
if ! grep -q "listening on https://" "$tmp/serve.err"; then
    echo "FAIL: enroll-setup: enroll serve did not start: $(oneline "$tmp/serve.err")"
    exit 0
fi

# config NAME SECRETFILE: a collector config whose identity goes to $tmp/NAME/.
config() {
    mkdir -p "$tmp/$1"
    cat >"$tmp/$1.json" <<JSON
{"listen": "127.0.0.1:$cport", "host": "$host",
 "cert": "$(winq "$tmp/$1/host.pem")", "key": "$(winq "$tmp/$1/host.key")",
 "ca": "$(winq "$certs/ca.pem")",
 "facts": "$(winq "$TLSGATE_SOURCE_ROOT/schema/report.example.json")",
 "enroll": {"url": "https://localhost:$eport", "site": "PS1",
            "secret_file": "$(winq "$tmp/$2")"}}
JSON
}

# 1. A wrong secret: refused, exit 3, no certificate written.
config bad wrong.secret
wine "$exe" enroll --config "$(winepath -w "$tmp/bad.json")" >"$tmp/bad.out" 2>"$tmp/bad.err"
rc=$?
if [ $rc = 3 ] && [ ! -e "$tmp/bad/host.pem" ]; then
    echo "PASS: enroll-wrong-secret-refused"
else
    echo "FAIL: enroll-wrong-secret-refused: exit $rc: $(oneline "$tmp/bad.err")"
fi

# 2. The first start with a secret only: enrolls, then serves the issued certificate.
config good site.secret
if start_collector "$tmp/good" wine "$exe" --config "$(winepath -w "$tmp/good.json")"; then
    issued=$(openssl x509 -in "$tmp/good/host.pem" -noout -fingerprint -sha256 2>/dev/null |
        sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')
    listed=$("${t[@]}" enroll list --json 2>/dev/null | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r.get("source") == "enroll":
        print((r.get("fingerprint") or "").lower())')
    kpub=$(openssl pkey -in "$tmp/good/host.key" -pubout 2>/dev/null)
    cpub=$(openssl x509 -in "$tmp/good/host.pem" -noout -pubkey 2>/dev/null)
    if [ -n "$issued" ] && [ "$issued" = "$listed" ] && [ -n "$kpub" ] && [ "$kpub" = "$cpub" ]
    then
        echo "PASS: enroll-issues-a-certificate-for-the-key-made-on-the-host"
    else
        echo "FAIL: enroll-issues-a-certificate-for-the-key-made-on-the-host: issued '$issued'," \
            "listed '$listed': $(oneline "$tmp/good.err")"
    fi
    if pull "$tmp/pull" "$host" "$COLLECTOR_PORT"; then
        echo "PASS: enroll-then-serves-and-is-pulled"
    else
        echo "FAIL: enroll-then-serves-and-is-pulled: $PULL_WHY"
    fi
    stop_collector
else
    echo "FAIL: enroll-issues-a-certificate-for-the-key-made-on-the-host: $COLLECTOR_WHY"
fi

# 3. `enroll` with a certificate already there: exit 0, nothing asked.
wine "$exe" enroll --config "$(winepath -w "$tmp/good.json")" >"$tmp/again.out" 2>"$tmp/again.err"
rc=$?
if [ $rc = 0 ]; then
    echo "PASS: enroll-again-finds-the-certificate"
else
    echo "FAIL: enroll-again-finds-the-certificate: exit $rc: $(oneline "$tmp/again.err")"
fi
exit 0
