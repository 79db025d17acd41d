#!/usr/bin/env bash
# t-service.sh — the collector as a Windows service under Wine, deployed the way Configuration
# Manager deploys it: a package folder with install.cmd, the exe per architecture, the config
# (relative paths) and the CA; the host's certificate pre-staged in %ProgramData%\tlsgate.
# Then: the service runs (status, pull of /v1/health and /v1/readiness over mutual TLS with
# curl from Linux), refresh by control code 128, a second collector on the same port names the
# service's process, stop, start failures reported with the collector's exit code, `net start`,
# the log file and its rotation, the Event Log source and message table, VERSIONINFO, and
# uninstall.cmd removing everything.
#
# Runs under tests/windows/run (the shared contract: WINEPREFIX, TLSGATE_WIN_EXE, TLSGATE_BUILD,
# TLSGATE_SOURCE_ROOT, TLSGATE_WIN_TMP ...). One line per case: PASS / FAIL / SKIP. What Wine
# cannot show (ACLs, the virtual account, failure actions, the firewall, the Event Log's
# contents) is a SKIP that says why; README "Deploying the collector with Configuration
# Manager" lists what remains to be checked on Windows.
set -uo pipefail

for v in WINEPREFIX TLSGATE_WIN_EXE TLSGATE_SOURCE_ROOT TLSGATE_WIN_TMP; do
    if [ -z "${!v:-}" ]; then
        echo "FAIL: service: $v is not set (run through tests/windows/run)"
        exit 1
    fi
done
export WINEDEBUG="${WINEDEBUG:--all}" WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"

src=$TLSGATE_SOURCE_ROOT
tmp=$TLSGATE_WIN_TMP/service
rm -rf "$tmp"
mkdir -p "$tmp"
drive=$WINEPREFIX/drive_c
pkg=$drive/tlsgate-pkg
data=$drive/ProgramData/tlsgate
prog="$drive/Program Files/tlsgate"
exe_win='C:\Program Files\tlsgate\tlsgate-collector.exe'
host=svc-host.tlsgate.test
evkey='HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\tlsgate-collector'

pass() { echo "PASS: service: $1"; }
fail() { echo "FAIL: service: $1: $2"; }
skip() { echo "SKIP: service: $1: $2"; }

# One wineserver for the whole script: a new one would boot the prefix again, and Wine's
# service manager starts every automatic service at boot (the runner kills it at the end).
wineserver -p >/dev/null 2>&1 || true

# wine with a cap on how long one command may take (a hung Wine never hangs the suite).
w() { timeout 120 wine "$@"; }
# The installed exe.
svc() { w "$exe_win" service "$@"; }

cleanup() {
    # Leave the prefix as the next script expects it: no service, no default config.
    if [ -f "$prog/tlsgate-collector.exe" ]; then
        svc uninstall >/dev/null 2>&1
    fi
    rm -rf "$pkg" "$data" "$prog"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# curl with the orchestrator's client certificate; prints the body, fails on non-2xx.
pull() {
    curl -sS --fail --max-time 10 --cacert "$tmp/certs/ca.pem" \
        --cert "$tmp/certs/orchestrator.pem" --key "$tmp/certs/orchestrator.key" \
        --resolve "$host:$port:127.0.0.1" "https://$host:$port$1"
}

# Waits (up to 30 s) until `pull /v1/health` answers; 0 when it does.
wait_health() {
    for _ in $(seq 1 60); do
        pull /v1/health >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

json_get() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }

# ---- the package -------------------------------------------------------------------------

port=$(free_port)
if ! "$src/tools/gen-certs" "$tmp/certs" "$host" >"$tmp/gen-certs.log" 2>&1; then
    fail setup "tools/gen-certs failed: $(tail -1 "$tmp/gen-certs.log")"
    exit 1
fi
# tools/build-windows's layout (ARCH/tlsgate-collector.exe, ARCH/LICENSES), then the package
# made from it by tools/windows/package, as the README tells the admin.
mkdir -p "$tmp/bw/x86_64" "$data"
cp "$TLSGATE_WIN_EXE" "$tmp/bw/x86_64/tlsgate-collector.exe"
lic="$(dirname "$TLSGATE_WIN_EXE")/LICENSES"
[ -d "$lic" ] && cp -r "$lic" "$tmp/bw/x86_64/"
if [ -n "${TLSGATE_WIN_EXE_X86:-}" ] && [ -f "$TLSGATE_WIN_EXE_X86" ]; then
    mkdir -p "$tmp/bw/i686"
    cp "$TLSGATE_WIN_EXE_X86" "$tmp/bw/i686/tlsgate-collector.exe"
fi
if "$src/tools/windows/package" --from "$tmp/bw" "$pkg" 2>"$tmp/package.err" &&
    [ -f "$pkg/install.cmd" ] && [ -f "$pkg/x86_64/tlsgate-collector.exe" ] &&
    [ -f "$pkg/collector.json.example" ]; then
    pass "tools/windows/package assembles the package folder"
else
    fail package "$(cat "$tmp/package.err")"
    exit 1
fi
cp "$tmp/certs/ca.pem" "$pkg/ca.pem"
# Relative paths: the service's working directory is System32, so only resolving them against
# the config's folder finds them.
cat >"$pkg/collector.json" <<JSON
{"listen": "127.0.0.1:$port", "cert": "host.pem", "key": "host.key", "ca": "ca.pem",
 "interval": 3600, "firewall_allow": ["127.0.0.1", "::1"]}
JSON
# The host's identity, pre-staged as an admin (or a later enrollment) would.
cp "$tmp/certs/$host.pem" "$data/host.pem"
cp "$tmp/certs/$host.key" "$data/host.key"

# ---- install.cmd ---------------------------------------------------------------------------

w cmd /c 'C:\tlsgate-pkg\install.cmd' >"$tmp/install.out" 2>&1
rc=$?
cp "$data/logs/install.log" "$tmp/install.log" 2>/dev/null
if [ $rc -eq 0 ] && grep -q '^installed' "$tmp/install.log" 2>/dev/null; then
    pass "install.cmd installs and starts the service (exit 0)"
else
    fail "install.cmd" "exit $rc: $(tail -3 "$tmp/install.log" 2>/dev/null | tr '\n' ' ')"
    exit 1
fi
if grep -q "architecture x86_64" "$tmp/install.log" &&
    cmp -s "$TLSGATE_WIN_EXE" "$prog/tlsgate-collector.exe"; then
    pass "install.cmd picked the x86_64 exe for a 64-bit Windows and copied it to Program Files"
else
    fail "install.cmd architecture" "$(grep architecture "$tmp/install.log")"
fi

w "$exe_win" service status >"$tmp/status.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q 'running' "$tmp/status.out" &&
    grep -q 'start:    automatic' "$tmp/status.out" &&
    grep -qF 'account:  NT SERVICE\tlsgate-collector' "$tmp/status.out" &&
    grep -qF 'service run --config "C:\ProgramData\tlsgate\collector.json"' "$tmp/status.out"; then
    pass "status: running, automatic start, NT SERVICE\\tlsgate-collector, config in its command"
else
    fail status "exit $rc: $(tr '\n' ' ' <"$tmp/status.out")"
fi

# ---- the service serves over mutual TLS ----------------------------------------------------

if wait_health; then
    health=$(pull /v1/health)
    if [ "$(echo "$health" | json_get status)" = ok ] &&
        [ "$(echo "$health" | json_get host)" = "$host" ]; then
        pass "GET /v1/health over mutual TLS from Linux: ok, host $host"
    else
        fail health "$health"
    fi
else
    fail health "the service never answered on 127.0.0.1:$port"
    exit 1
fi
report=$(pull /v1/readiness)
if [ "$(echo "$report" | json_get host)" = "$host" ] &&
    echo "$report" | python3 -c 'import json, sys
sys.exit(json.load(sys.stdin)["collector"]["source"] != "registry")'; then
    pass "GET /v1/readiness: the report of $host from the live registry"
else
    fail readiness "$(echo "$report" | head -c 300)"
fi
pass "config paths relative to the config's folder (the service runs in System32)"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$tmp/certs/ca.pem" \
    --resolve "$host:$port:127.0.0.1" "https://$host:$port/v1/readiness")
if [ "$code" = 401 ]; then
    pass "no client certificate: 401"
else
    fail "no client certificate" "HTTP $code, expected 401"
fi

# ---- refresh by control code 128 -----------------------------------------------------------

before=$(pull /v1/health | json_get last_refresh)
# last_refresh has a resolution of one second: let that second pass before asking.
sleep 1.2
if svc refresh >"$tmp/refresh.out" 2>&1; then
    after=$before
    for _ in $(seq 1 40); do
        after=$(pull /v1/health | json_get last_refresh)
        [ "$after" != "$before" ] && break
        sleep 0.25
    done
    if [ "$after" != "$before" ]; then
        pass "service refresh (control code 128): last_refresh $before -> $after"
    else
        fail refresh "last_refresh stayed $before"
    fi
else
    fail refresh "service refresh: $(tr '\n' ' ' <"$tmp/refresh.out")"
fi

# ---- a second collector on the service's port ----------------------------------------------

w "$exe_win" --config 'C:\ProgramData\tlsgate\collector.json' >"$tmp/second.out" 2>"$tmp/second.err"
rc=$?
if [ $rc -eq 4 ] && grep -q "in use" "$tmp/second.err" &&
    grep -q "held by process [0-9]* (.*tlsgate-collector.exe)" "$tmp/second.err"; then
    pass "a bind failure says the port is taken and by which process: $(grep -o 'held by.*' \
        "$tmp/second.err" | head -c 120)"
elif [ $rc -eq 4 ] && grep -q "in use" "$tmp/second.err"; then
    pass "a bind failure says the port is taken (exit 4)"
    skip "the owner of a taken port" \
        "Wine's GetExtendedTcpTable reports the listener with no owning process (PID 0)"
else
    fail "port taken" "exit $rc: $(cat "$tmp/second.err")"
fi

# ---- stop, failed start, net start ---------------------------------------------------------

if svc stop >"$tmp/stop.out" 2>&1 && grep -q "stopped (exit code 0)" "$tmp/stop.out" &&
    ! pull /v1/health >/dev/null 2>&1; then
    pass "service stop: stopped with exit code 0, port closed"
else
    fail stop "$(tr '\n' ' ' <"$tmp/stop.out")"
fi
svc status >/dev/null 2>&1
rc=$?
if [ $rc -eq 1 ]; then
    pass "status of a stopped service exits 1"
else
    fail "status stopped" "exit $rc"
fi

# A start that fails says so with the collector's exit code (3: bad input).
cp "$data/collector.json" "$tmp/collector.json.good"
sed 's/"host.pem"/"missing.pem"/' "$tmp/collector.json.good" >"$data/collector.json"
svc start >"$tmp/badstart.out" 2>&1
rc=$?
if [ $rc -eq 3 ] && grep -q "stopped while starting, exit code 3" "$tmp/badstart.out"; then
    pass "a start that fails returns the collector's exit code 3 and names the log"
else
    fail "failed start" "exit $rc: $(tr '\n' ' ' <"$tmp/badstart.out")"
fi
if grep -q "missing.pem" "$data/logs/collector.log" 2>/dev/null; then
    pass "the reason of the failed start is in collector.log"
else
    fail "failed start log" "collector.log does not name missing.pem"
fi
cp "$tmp/collector.json.good" "$data/collector.json"

# Rotation: fill collector.log up to just under its 4 MiB cap while stopped; the next start
# must move it to collector.log.1 and begin a new one.
python3 - "$data/logs/collector.log" <<'PY'
import os, sys
path = sys.argv[1]
cap = 4 * 1024 * 1024
size = os.path.getsize(path)
line = b"2026-01-01T00:00:00Z info filler line for the rotation test\r\n"
with open(path, "ab") as f:
    while size + len(line) < cap - 20:
        f.write(line)
        size += len(line)
PY
w net start tlsgate-collector >"$tmp/netstart.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && wait_health; then
    pass "net start tlsgate-collector: serving again"
else
    fail "net start" "exit $rc: $(tr '\n' ' ' <"$tmp/netstart.out")"
fi
log=$data/logs/collector.log
if [ -f "$log.1" ] && [ "$(stat -c %s "$log.1")" -le $((4 * 1024 * 1024)) ] &&
    [ "$(stat -c %s "$log")" -lt 100000 ] && grep -q "filler line" "$log.1" &&
    ! grep -q "filler line" "$log"; then
    pass "collector.log rotated at its 4 MiB cap into collector.log.1"
else
    fail "log rotation" "$(ls -l "$data/logs" | tr '\n' ' ')"
fi
if grep -q "info service: starting, version" "$log" &&
    grep -q "info serving $host on port $port" "$log" &&
    grep -q "refresh requested (control code 128)" "$log.1"; then
    pass "collector.log has the start, the serving line and the refresh request"
else
    fail "log contents" "$(tail -5 "$log" | tr '\n' ' ')"
fi

# ---- Event Log source, message table, VERSIONINFO -------------------------------------------

w reg query "$evkey" /v EventMessageFile >"$tmp/evkey.out" 2>&1
if grep -qiF "$exe_win" "$tmp/evkey.out"; then
    pass "Event Log source registered, EventMessageFile = the exe"
else
    fail "event source" "$(tr '\n' ' ' <"$tmp/evkey.out")"
fi
resinfo=$tmp/resinfo.exe
if x86_64-w64-mingw32-gcc -O1 -o "$resinfo" "$src/tests/windows/resinfo.c" -lversion \
    2>"$tmp/resinfo.err"; then
    msg=$(w "$resinfo" "$exe_win" message 0xC0000003 3 "a key that is not the certificate's" 2>&1 |
        tr -d '\r')
    want="The tlsgate collector service stopped with exit code 3 (2 usage, 3 bad input, 4 system"
    want="$want error): a key that is not the certificate's"
    if [ "$msg" = "$want" ]; then
        pass "the exe's message table gives Event Viewer the text of event 3"
    else
        fail "message table" "$msg"
    fi
    version=$(sed -n "s/^ *version: '\\([0-9.]*\\)'.*/\\1/p" "$src/meson.build" | head -1)
    info=$(w "$resinfo" "$exe_win" version 2>&1 | tr -d '\r')
    if echo "$info" | grep -qx "FILEVERSION $version.0" &&
        echo "$info" | grep -qx "ProductVersion $version"; then
        pass "VERSIONINFO: file version $version.0 (the detection method's), product $version"
    else
        fail VERSIONINFO "expected $version.0: $info"
    fi
else
    fail resinfo "cannot build tests/windows/resinfo.c: $(head -3 "$tmp/resinfo.err")"
fi
skip "Event Log entries" \
    "Wine's ReportEventW keeps nothing, so the start/stop/failure events cannot be read back"

# ---- what Wine cannot show -------------------------------------------------------------------

if grep -q "remoteip=127.0.0.1,::1" "$tmp/install.log" &&
    grep -q "localport=$port" "$tmp/install.log" &&
    grep -q "protocol=TCP" "$tmp/install.log"; then
    pass "install runs netsh advfirewall add rule for TCP $port from firewall_allow only"
else
    fail "firewall rule command" "$(grep firewall "$tmp/install.log" | tr '\n' ' ')"
fi
skip "firewall rule in effect" "Wine's netsh accepts advfirewall commands and does nothing"
skip "key file ACL" "Wine does not store file ACLs (install noted it: $(grep -c \
    'note: Wine does not keep file ACLs' "$tmp/install.log"))"
skip "virtual account NT SERVICE\\tlsgate-collector" "Wine runs every service as the prefix's user"
skip "restart on failure" "Wine's service manager has no failure actions (install noted: $(grep -c \
    "note: Wine's service manager" "$tmp/install.log"))"
skip "SHUTDOWN control" "Wine does not send it on wineserver -k"
if [ -f "$pkg/i686/tlsgate-collector.exe" ]; then
    skip "install.cmd on 32-bit Windows" \
        "a 64-bit prefix always reports AMD64 (and there is no 32-bit Wine here)"
fi

# ---- uninstall.cmd -------------------------------------------------------------------------

w cmd /c 'C:\tlsgate-pkg\uninstall.cmd' >"$tmp/uninstall.out" 2>&1
rc=$?
w reg query "$evkey" >/dev/null 2>&1
evrc=$?
if [ $rc -eq 0 ] && [ ! -e "$prog" ] && [ $evrc -ne 0 ] && ! pull /v1/health >/dev/null 2>&1 &&
    [ -f "$data/host.key" ]; then
    pass "uninstall.cmd: service, Event Log source and Program Files\\tlsgate removed, data kept"
else
    fail uninstall "exit $rc, event key rc $evrc: $(tail -5 "$data/logs/install.log" | tr '\n' ' ')"
fi
# The service is gone from the SCM: the exe from the package says it is not installed.
w 'C:\tlsgate-pkg\x86_64\tlsgate-collector.exe' service status >"$tmp/gone.out" 2>&1
rc=$?
if [ $rc -eq 4 ] && grep -q "is not installed" "$tmp/gone.out"; then
    pass "status after uninstall: not installed (exit 4)"
else
    fail "status after uninstall" "exit $rc: $(tr '\n' ' ' <"$tmp/gone.out")"
fi

# An install whose config lacks the key installs nothing.
printf '{"listen": "127.0.0.1:%s", "cert": "host.pem", "ca": "ca.pem"}\n' "$port" \
    >"$data/collector.json"
w 'C:\tlsgate-pkg\x86_64\tlsgate-collector.exe' service install >"$tmp/badinstall.out" 2>&1
rc=$?
w 'C:\tlsgate-pkg\x86_64\tlsgate-collector.exe' service status >/dev/null 2>&1
src_rc=$?
if [ $rc -eq 3 ] && grep -q '"key" is missing' "$tmp/badinstall.out" && [ $src_rc -eq 4 ]; then
    pass "service install refuses a config without \"key\" (exit 3) and installs nothing"
else
    fail "bad install" "exit $rc, status $src_rc: $(tr '\n' ' ' <"$tmp/badinstall.out")"
fi

w cmd /c 'C:\tlsgate-pkg\uninstall.cmd' /purge >"$tmp/purge.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ ! -e "$data" ]; then
    pass "uninstall.cmd /purge deletes %ProgramData%\\tlsgate"
else
    fail purge "exit $rc: $(tr '\n' ' ' <"$tmp/purge.out")"
fi
exit 0
