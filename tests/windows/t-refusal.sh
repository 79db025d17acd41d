#!/usr/bin/env bash
# The HTTPS server's behaviour and limits, as a matrix run against the native collector and the
# x64 exe under Wine with the same expectations (one behaviour on both platforms):
#   200 for the orchestrator's certificate (TLS 1.2 and 1.3); 401 without a client certificate;
#   403 for a certificate from a foreign CA and for another host's certificate; a TLS 1.1 client
#   refused (the same client with TLS 1.2 allowed gets 200: the refusal is the server's);
#   404, 405, 413; an oversize header gets 431 or a closed connection and the server serves on;
#   16 connections from one address: the next one is refused, then served once they close;
#   an idle connection is closed by the server (10 s idle timeout).
# Then, for the exe only: a registry whose SCHANNEL says "TLS 1.2\Server Enabled=0" (and
# DisabledByDefault=1) still gets TLS 1.2 served (GnuTLS does not follow SCHANNEL), and the
# report the exe serves says tls12.server.enabled is 0 (it read that registry).
set -u
. "$(dirname "$0")/lib.sh"
tmp="$TLSGATE_WIN_TMP"
c="$TLSGATE_CERTS"
host=wine-x64.test
hold="$(dirname "$0")/hold.py"
fixture="$TLSGATE_SOURCE_ROOT/tests/fixtures/reg/win10-22h2.reg"
server=(--listen 127.0.0.1:0 --cert "$c/$host.pem" --key "$c/$host.key" --ca "$c/ca.pem")
trap stop_collector EXIT

# get PORT [curl options...] : prints the HTTP code (000 when no HTTP answer) and curl's exit.
get() {
    local port="$1"; shift
    local code rc
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 --cacert "$c/ca.pem" \
        --resolve "$host:$port:127.0.0.1" "$@")
    rc=$?
    echo "$code/$rc"
}
orch=(--cert "$c/orchestrator.pem" --key "$c/orchestrator.key")
url() { echo "https://$host:$1$2"; }

# expect NAME GOT WANT-REGEX
expect() {
    if [[ "$2" =~ ^($3)$ ]]; then echo "PASS: $1"; else echo "FAIL: $1: got $2, want $3"; fi
}

matrix() {
    local w="$1" p="$2"
    expect "$w-orchestrator-200" "$(get "$p" "${orch[@]}" "$(url "$p" /v1/readiness)")" "200/0"
    expect "$w-tls12-200" "$(get "$p" "${orch[@]}" --tlsv1.2 --tls-max 1.2 \
        "$(url "$p" /v1/readiness)")" "200/0"
    expect "$w-tls13-200" "$(get "$p" "${orch[@]}" --tlsv1.3 "$(url "$p" /v1/health)")" "200/0"
    expect "$w-no-client-cert-401" "$(get "$p" "$(url "$p" /v1/readiness)")" "401/0"
    expect "$w-foreign-ca-403" "$(get "$p" --cert "$c/foreign/orchestrator.pem" \
        --key "$c/foreign/orchestrator.key" "$(url "$p" /v1/readiness)")" "403/0"
    expect "$w-other-host-cert-403" "$(get "$p" --cert "$c/other.test.pem" \
        --key "$c/other.test.key" "$(url "$p" /v1/readiness)")" "403/0"
    # SECLEVEL=0 lets OpenSSL 3 offer TLS 1.1 at all; the control shows this client works.
    expect "$w-tls11-refused" "$(get "$p" "${orch[@]}" --ciphers 'DEFAULT:@SECLEVEL=0' \
        --tlsv1.1 --tls-max 1.1 "$(url "$p" /v1/readiness)")" "000/35"
    expect "$w-tls11-client-control-200" "$(get "$p" "${orch[@]}" \
        --ciphers 'DEFAULT:@SECLEVEL=0' --tlsv1.1 --tls-max 1.2 "$(url "$p" /v1/readiness)")" \
        "200/0"
    expect "$w-unknown-path-404" "$(get "$p" "${orch[@]}" "$(url "$p" /v1/nope)")" "404/0"
    expect "$w-method-405" "$(get "$p" "${orch[@]}" -X DELETE "$(url "$p" /v1/readiness)")" \
        "405/0"
    expect "$w-body-413" "$(get "$p" "${orch[@]}" -X GET --data 'x=1' \
        "$(url "$p" /v1/readiness)")" "413/0"
    local big
    big=$(head -c 40000 /dev/zero | tr '\0' a)
    expect "$w-oversize-header-431" "$(get "$p" "${orch[@]}" -H "X-Big: $big" \
        "$(url "$p" /v1/readiness)")" "431/0|000/(52|56|55)"
    expect "$w-serves-after-oversize" "$(get "$p" "${orch[@]}" "$(url "$p" /v1/readiness)")" \
        "200/0"
    expect "$w-per-address-cap" "$(python3 "$hold" hold "$p" 16 curl -s -o /dev/null \
        -w '%{http_code}' --max-time 30 --cacert "$c/ca.pem" --resolve "$host:$p:127.0.0.1" \
        "${orch[@]}" "$(url "$p" /v1/readiness)")" "000"
    expect "$w-serves-after-cap" "$(get "$p" "${orch[@]}" "$(url "$p" /v1/readiness)")" "200/0"
    expect "$w-idle-timeout" "$(python3 "$hold" idle "$p" 40)" "closed"
}

if start_collector "$tmp/native" "$TLSGATE_BUILD/collectors/tlsgate-collector" "${server[@]}" \
    --regfile "$fixture"; then
    matrix linux "$COLLECTOR_PORT"
    stop_collector
else
    echo "FAIL: linux-start: $COLLECTOR_WHY"
fi

if start_collector "$tmp/wine" wine "$TLSGATE_WIN_EXE" "${server[@]}" --regfile "$fixture"; then
    matrix wine "$COLLECTOR_PORT"
    stop_collector
else
    echo "FAIL: wine-start: $COLLECTOR_WHY"
fi

# SCHANNEL says no TLS 1.2 server; the bundled GnuTLS serves it anyway.
registry_save "$tmp/system.reg.orig"
key='HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL'
printf '%s\r\n' 'REGEDIT4' '' "[$key\\Protocols\\TLS 1.2\\Server]" \
    '"Enabled"=dword:00000000' '"DisabledByDefault"=dword:00000001' '' >"$tmp/schannel-off.reg"
if ! wine reg import "$tmp/schannel-off.reg" >"$tmp/import.log" 2>&1; then
    echo "FAIL: schannel-tls12-off-still-served: wine reg import: $(oneline "$tmp/import.log")"
elif ! start_collector "$tmp/schannel" wine "$TLSGATE_WIN_EXE" "${server[@]}" --registry; then
    echo "FAIL: schannel-tls12-off-still-served: exe: $COLLECTOR_WHY"
else
    p=$COLLECTOR_PORT
    expect "schannel-tls12-off-still-served" "$(get "$p" "${orch[@]}" --tlsv1.2 --tls-max 1.2 \
        "$(url "$p" /v1/readiness)")" "200/0"
    v=$(curl -s --max-time 30 --cacert "$c/ca.pem" --resolve "$host:$p:127.0.0.1" "${orch[@]}" \
        "$(url "$p" /v1/readiness)" | python3 -c \
        'import json,sys; print(json.load(sys.stdin)["schannel"]["tls12"]["server"]["enabled"])')
    expect "schannel-tls12-off-read-from-registry" "$v" "0"
    stop_collector
fi
registry_restore "$tmp/system.reg.orig"
exit 0
