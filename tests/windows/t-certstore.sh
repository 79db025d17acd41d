#!/usr/bin/env bash
# The identity from LocalMachine\My (issue 12, "certificate": {"store": ...} in the config):
# an empty store refuses to start naming the store and the host; a store filled by
# certimport.exe (PFX, machine key, not exportable) next to decoys (clientAuth only, another
# name) serves the right certificate to a real pull. Wine's CNG (ncrypt) cannot open every key a
# PFX import makes: when the collector says the chosen certificate has no usable private key,
# the serving case is a SKIP with that reason, never a PASS.
set -u
. "$TLSGATE_SOURCE_ROOT/tests/windows/lib.sh"
tmp="$TLSGATE_WIN_TMP"
certs="$TLSGATE_CERTS"
exe="$TLSGATE_WIN_EXE"
host=wine-x64.test

cfg="$tmp/collector.json"
cat >"$cfg" <<JSON
{"listen": "127.0.0.1:0", "certificate": {"store": "LocalMachine\\\\My"},
 "ca": "$(winepath -w "$certs/ca.pem" | sed 's/\\/\\\\/g')",
 "facts": "$(winepath -w "$TLSGATE_SOURCE_ROOT/schema/report.example.json" | sed 's/\\/\\\\/g')",
 "host": "$host"}
JSON

# 1. Nothing in the store: exit 3, the store and the host named.
wine "$exe" --config "$(winepath -w "$cfg")" >"$tmp/empty.out" 2>"$tmp/empty.err"
rc=$?
if [ $rc = 3 ] && grep -q "LocalMachine\\\\My: no certificate to serve as $host" "$tmp/empty.err"; then
    echo "PASS: certstore-empty-store-refuses-with-the-store-named"
else
    echo "FAIL: certstore-empty-store-refuses-with-the-store-named: exit $rc: $(oneline "$tmp/empty.err")"
fi

# 2. Candidates: RSA keys (what AD CS issues and Wine's PFX import handles).
cnf="$tmp/ext.cnf"
cat >"$cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[machine]
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:wine-x64.test
[workstation]
extendedKeyUsage = clientAuth
subjectAltName = DNS:wine-x64.test
[other]
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:other.test
CNF
for v in machine workstation other; do
    if ! openssl req -new -x509 -config "$cnf" -extensions $v -newkey rsa:2048 -nodes \
        -keyout "$tmp/$v.key" -out "$tmp/$v.pem" -subj "/CN=$v" -CA "$certs/ca.pem" \
        -CAkey "$certs/ca.key" -days 30 2>"$tmp/openssl.err" ||
        ! openssl pkcs12 -export -in "$tmp/$v.pem" -inkey "$tmp/$v.key" -out "$tmp/$v.pfx" \
            -passout pass:test -certpbe PBE-SHA1-3DES -keypbe PBE-SHA1-3DES -macalg sha1 \
            2>>"$tmp/openssl.err"; then
        echo "FAIL: certstore-candidates: openssl: $(oneline "$tmp/openssl.err")"
        exit 0
    fi
done
if ! x86_64-w64-mingw32-gcc -O1 -o "$tmp/certimport.exe" \
    "$TLSGATE_SOURCE_ROOT/tests/windows/certimport.c" -lcrypt32 2>"$tmp/cc.err"; then
    echo "FAIL: certstore-import: cannot build certimport.c: $(oneline "$tmp/cc.err")"
    exit 0
fi
for v in workstation other machine; do
    if ! wine "$tmp/certimport.exe" "$(winepath -w "$tmp/$v.pfx")" test >"$tmp/import.out" \
        2>"$tmp/import.err"; then
        echo "SKIP: certstore-serves-the-machine-certificate: Wine's PFXImportCertStore refused" \
            "$v.pfx: $(oneline "$tmp/import.err")"
        exit 0
    fi
done
echo "PASS: certstore-import"

thumb=$(openssl x509 -in "$tmp/machine.pem" -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')
if start_collector "$tmp/store" wine "$exe" --config "$(winepath -w "$cfg")"; then
    if grep -q "certificate $thumb .*chosen for $host" "$tmp/store.err" &&
        grep -q "clientAuth only" "$tmp/store.err" &&
        grep -q "issued to other.test" "$tmp/store.err"; then
        echo "PASS: certstore-logs-every-candidate"
    else
        echo "FAIL: certstore-logs-every-candidate: $(oneline "$tmp/store.err")"
    fi
    if pull "$tmp/pull" "$host" "$COLLECTOR_PORT"; then
        echo "PASS: certstore-serves-the-machine-certificate"
    else
        echo "FAIL: certstore-serves-the-machine-certificate: $PULL_WHY"
    fi
    stop_collector
elif grep -q "no private key in the store for it" "$tmp/store.err" ||
    grep -q "cannot be opened\|does not sign" "$tmp/store.err"; then
    # Enumeration and judgement through the real crypt32 still ran: one line per candidate.
    if [ "$(grep -c 'LocalMachine\\My: certificate [0-9A-F]\{40\} ' "$tmp/store.err")" = 3 ] &&
        grep -q "clientAuth only" "$tmp/store.err" && grep -q "issued to other.test" "$tmp/store.err"
    then
        echo "PASS: certstore-judges-every-candidate-in-the-store"
    else
        echo "FAIL: certstore-judges-every-candidate-in-the-store: $(oneline "$tmp/store.err")"
    fi
    echo "SKIP: certstore-serves-the-machine-certificate: Wine cannot open the imported key" \
        "through CNG: $(oneline "$tmp/store.err")"
else
    echo "FAIL: certstore-serves-the-machine-certificate: $COLLECTOR_WHY"
fi
exit 0
