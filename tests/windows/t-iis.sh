#!/usr/bin/env bash
# The IIS log summary on Windows (issue 18): the x64 collector reads a W3C log folder (given in
# its config, and the default %SystemDrive%\inetpub\logs\LogFiles when "evidence" names none),
# serves /v1/evidence over mutual TLS to native curl with the test certificates, and the native
# tlsgate stores it with `collect`: the legacy client of the log blocks the server's gate.
set -u
. "$TLSGATE_SOURCE_ROOT/tests/windows/lib.sh"
tmp="$TLSGATE_WIN_TMP"
certs="$TLSGATE_CERTS"
exe="$TLSGATE_WIN_EXE"
host=wine-x64.test
winq() { winepath -w "$1" | sed 's/\\/\\\\/g'; }
today=$(date -u +%Y-%m-%d)
file="u_ex$(date -u +%y%m%d).log"

# log FOLDER CLIENT: a W3C log (CRLF, fields in IIS's order with crypt-protocol) of today in
# FOLDER/W3SVC1: CLIENT twice over TLS 1.0, 127.0.0.98 over TLS 1.2, one plain request and one
# hostile line.
log() {
    mkdir -p "$1/W3SVC1"
    printf '%s\r\n' "#Software: Microsoft Internet Information Services 10.0" "#Version: 1.0" \
        "#Fields: date time s-ip cs-method cs-uri-stem s-port c-ip sc-status crypt-protocol" \
        "$today 10:00:00 127.0.0.1 GET /SMS_MP/.sms_aut 443 $2 200 40" \
        "$today 10:00:01 127.0.0.1 GET /SMS_MP/.sms_aut 443 $2 200 40" \
        "$today 10:00:02 127.0.0.1 GET /SMS_MP/.sms_aut 443 127.0.0.98 200 400" \
        "$today 10:00:03 127.0.0.1 GET /plain 80 127.0.0.98 200 -" \
        "$today 10:00:04 127.0.0.1 GET" >"$1/W3SVC1/$file"
}

# config NAME EVIDENCE: a collector config serving $host with that "evidence" object.
config() {
    cat >"$tmp/$1.json" <<JSON
{"listen": "127.0.0.1:0", "host": "$host",
 "cert": "$(winq "$certs/$host.pem")", "key": "$(winq "$certs/$host.key")",
 "ca": "$(winq "$certs/ca.pem")",
 "facts": "$(winq "$TLSGATE_SOURCE_ROOT/schema/report.example.json")",
 "evidence": $2}
JSON
}

# evidence OUT: GET /v1/evidence with the orchestrator's certificate until a 200 (30 s).
evidence() {
    local code=
    for _ in $(seq 1 300); do
        code=$(curl -s -o "$1" -w '%{http_code}' --max-time 10 --cacert "$certs/ca.pem" \
            --cert "$certs/orchestrator.pem" --key "$certs/orchestrator.key" \
            --resolve "$host:$COLLECTOR_PORT:127.0.0.1" "https://$host:$COLLECTOR_PORT/v1/evidence")
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    echo "HTTP $code" >"$1"
    return 1
}

# count FILE CLIENT PROTOCOL: that entry's count in the summary (0 when absent).
count() {
    python3 - "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(sum(e["count"] for e in d["entries"]
          if e["client"] == sys.argv[2] and e["protocol"] == sys.argv[3]))
PY
}

# 1. The folder of the config: served over mutual TLS, refused without a client certificate.
log "$tmp/LogFiles" 127.0.0.99
config given "{\"iis_logs\": \"$(winq "$tmp/LogFiles")\", \"max_clients\": 100}"
if start_collector "$tmp/given" wine "$exe" --config "$(winepath -w "$tmp/given.json")"; then
    if evidence "$tmp/given.evidence" && [ "$(count "$tmp/given.evidence" 127.0.0.99 tls1.0)" = 2 ] &&
        [ "$(count "$tmp/given.evidence" 127.0.0.98 tls1.2)" = 1 ] &&
        python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
sys.exit(not (d["refused"] == 1 and d["plain"] == 1 and d["host"] == sys.argv[2]
              and d["files"][0]["name"] == "W3SVC1/" + sys.argv[3]))' \
            "$tmp/given.evidence" "$host" "$file"; then
        echo "PASS: iis-summary-served-over-mutual-tls"
    else
        echo "FAIL: iis-summary-served-over-mutual-tls: $(oneline "$tmp/given.evidence")" \
            "$(oneline "$tmp/given.err")"
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$certs/ca.pem" \
        --resolve "$host:$COLLECTOR_PORT:127.0.0.1" "https://$host:$COLLECTOR_PORT/v1/evidence")
    if [ "$code" = 401 ]; then
        echo "PASS: iis-summary-refused-without-client-certificate"
    else
        echo "FAIL: iis-summary-refused-without-client-certificate: HTTP $code"
    fi

    # 2. The native tlsgate pulls it after the report: the legacy client blocks the gate.
    d="$tmp/pull"
    mkdir -p "$d"
    printf 'name,site,roles,collector,os\n%s,PS1,management_point,127.0.0.1:%s,\n' "$host" \
        "$COLLECTOR_PORT" >"$d/inv.csv"
    printf '{"tls": {"ca": "%s", "cert": "%s", "key": "%s"}}\n' "$certs/ca.pem" \
        "$certs/orchestrator.pem" "$certs/orchestrator.key" >"$d/cfg.json"
    t=("$TLSGATE_BUILD/orchestrator/tlsgate" --db "$d/t.db" --config "$d/cfg.json")
    if "${t[@]}" init >"$d/log" 2>&1 && "${t[@]}" inventory import "$d/inv.csv" >>"$d/log" 2>&1 &&
        "${t[@]}" collect >>"$d/log" 2>&1 &&
        "${t[@]}" gate check "$host" --json >"$d/gate.json" 2>>"$d/log"; [ -s "$d/gate.json" ] &&
        python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
sys.exit(not any(h["host"] == "127.0.0.99" for b in d["blockers"]
                 if b["rule"] == "legacy-handshake" for h in b["list"]))' "$d/gate.json"; then
        echo "PASS: iis-legacy-client-blocks-the-gate-after-collect"
    else
        echo "FAIL: iis-legacy-client-blocks-the-gate-after-collect: $(oneline "$d/log")"
    fi
    stop_collector
else
    echo "FAIL: iis-summary-served-over-mutual-tls: $COLLECTOR_WHY"
fi

# 3. No folder named: %SystemDrive%\inetpub\logs\LogFiles (C: is the prefix's drive_c).
default="$WINEPREFIX/drive_c/inetpub/logs/LogFiles"
log "$default" 127.0.0.97
config default '{}'
if start_collector "$tmp/default" wine "$exe" --config "$(winepath -w "$tmp/default.json")"; then
    if evidence "$tmp/default.evidence" && [ "$(count "$tmp/default.evidence" 127.0.0.97 tls1.0)" = 2 ]
    then
        echo "PASS: iis-default-folder-under-systemdrive"
    else
        echo "FAIL: iis-default-folder-under-systemdrive: $(oneline "$tmp/default.evidence")" \
            "$(oneline "$tmp/default.err")"
    fi
    stop_collector
else
    echo "FAIL: iis-default-folder-under-systemdrive: $COLLECTOR_WHY"
fi
rm -rf "$WINEPREFIX/drive_c/inetpub"
exit 0
