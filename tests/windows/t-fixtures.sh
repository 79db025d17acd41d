#!/usr/bin/env bash
# For every fixture tests/fixtures/reg/NAME.reg that has tests/fixtures/facts/NAME.json: import
# it into the prefix's registry (wine reg import), run the x64 exe reading the live registry,
# pull it with the native `tlsgate collect` over mutual TLS on 127.0.0.1, and check that
#   - the stored facts equal tests/fixtures/facts/NAME.json and the source is "registry";
#   - `tlsgate host show --json` (state, verdicts, reasons, facts) is identical to what the
#     native collector reading the same .reg file yields.
#
# A clean registry for each fixture: Wine's own registry has values under keys the collector
# reads (Windows NT\CurrentVersion, Session Manager\Environment, SCHANNEL, WinHttp ...). Once,
# the script deletes every key the collector reads that Wine can do without (scrub.reg) and saves
# that registry. Each fixture then starts from the saved registry in a new Wine session kept
# alive (wineserver -p) until its exe has run, because Wine's session start (wineboot) writes
# values again: after it, the values under the keys Wine needs are deleted (CurrentVersion: all;
# Environment: PROCESSOR_ARCHITECTURE; ProductOptions: ProductType), then the fixture is imported. The case
# "scrubbed-registry-is-empty" checks the method: on such a registry with nothing imported the
# exe must report exactly the facts of an empty .reg file (it fails when the collector learns to
# read something Wine fills and this script does not clear yet).
#
# Layered fixtures (an export of changes over another export, as in test_facts.c) are named in
# tests/windows/layers: "NAME: BASE..." imports BASE.reg first.
#
# FIXTURE_EXE / FIXTURE_HOST / FIXTURE_LABEL run the same cases with another exe (t-x86.sh).
set -u
. "$(dirname "$0")/lib.sh"
src="$TLSGATE_SOURCE_ROOT"
tmp="$TLSGATE_WIN_TMP"
exe="${FIXTURE_EXE:-$TLSGATE_WIN_EXE}"
host="${FIXTURE_HOST:-wine-x64.test}"
label="${FIXTURE_LABEL:-}"
cert=(--cert "$TLSGATE_CERTS/$host.pem" --key "$TLSGATE_CERTS/$host.key"
      --ca "$TLSGATE_CERTS/ca.pem")
trap stop_collector EXIT

registry_save "$tmp/system.reg.orig"

# The keys: a REGEDIT4 file (ASCII) of [-KEY] lines.
if ! wine reg import "$(dirname "$0")/scrub.reg" >"$tmp/scrub.log" 2>&1; then
    echo "FAIL: ${label}scrub: $(oneline "$tmp/scrub.log")"
    exit 1
fi
registry_save "$tmp/system.reg.scrubbed"

# A session on the scrubbed registry, with the values Wine's session start wrote cleared.
fresh_session() {
    registry_restore "$tmp/system.reg.scrubbed"
    wineserver -p
    wine reg delete 'HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion' /va /f \
        >"$tmp/values.log" 2>&1 || return 1
    wine reg delete 'HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Environment' \
        /v PROCESSOR_ARCHITECTURE /f >>"$tmp/values.log" 2>&1 || true # absent is fine
    wine reg delete 'HKLM\SYSTEM\CurrentControlSet\Control\ProductOptions' \
        /v ProductType /f >>"$tmp/values.log" 2>&1 || true
}

# compare.py MODE ...: the JSON comparisons, in Python for exact JSON equality.
cmp_py="$(dirname "$0")/compare.py"

# The scrubbed registry is empty as far as the collector can see.
printf 'Windows Registry Editor Version 5.00\r\n\r\n' | iconv -f utf-8 -t utf-16 >"$tmp/empty.reg"
case_empty() {
    start_collector "$tmp/empty-native" "$TLSGATE_BUILD/collectors/tlsgate-collector" \
        --listen 127.0.0.1:0 "${cert[@]}" --regfile "$tmp/empty.reg" || {
        echo "FAIL: ${label}scrubbed-registry-is-empty: native collector: $COLLECTOR_WHY"; return; }
    pull "$tmp/empty-native" "$host" "$COLLECTOR_PORT" || {
        echo "FAIL: ${label}scrubbed-registry-is-empty: native pull: $PULL_WHY"
        stop_collector; return; }
    stop_collector
    fresh_session || {
        echo "FAIL: ${label}scrubbed-registry-is-empty: $(oneline "$tmp/values.log")"; return; }
    start_collector "$tmp/empty-wine" wine "$exe" --listen 127.0.0.1:0 \
        "${cert[@]}" --registry || {
        echo "FAIL: ${label}scrubbed-registry-is-empty: exe: $COLLECTOR_WHY"; return; }
    pull "$tmp/empty-wine" "$host" "$COLLECTOR_PORT" || {
        echo "FAIL: ${label}scrubbed-registry-is-empty: pull: $PULL_WHY"; stop_collector; return; }
    stop_collector
    if why=$(python3 "$cmp_py" same "$tmp/empty-wine/show.json" "$tmp/empty-native/show.json"); then
        echo "PASS: ${label}scrubbed-registry-is-empty"
    else
        echo "FAIL: ${label}scrubbed-registry-is-empty: Wine's registry still shows through: $why"
    fi
}
case_empty

# NAME -> the .reg files to layer, in order.
layers() {
    local line
    line=$(grep -E "^$1:" "$(dirname "$0")/layers" 2>/dev/null | head -n1)
    local base
    for base in ${line#*:}; do echo "$src/tests/fixtures/reg/$base.reg"; done
    echo "$src/tests/fixtures/reg/$1.reg"
}

n=0
for reg in "$src"/tests/fixtures/reg/*.reg; do
    name=$(basename "$reg" .reg)
    want="$src/tests/fixtures/facts/$name.json"
    [ -f "$want" ] || continue
    n=$((n + 1))
    d="$tmp/$name"
    mkdir -p "$d"
    mapfile -t files < <(layers "$name")
    regargs=()
    for f in "${files[@]}"; do regargs+=(--regfile "$f"); done

    # The .reg path (native collector) first: it is the reference.
    if ! start_collector "$d/native" "$TLSGATE_BUILD/collectors/tlsgate-collector" \
        --listen 127.0.0.1:0 "${cert[@]}" "${regargs[@]}"; then
        echo "FAIL: ${label}fixture-$name: native collector: $COLLECTOR_WHY"; continue
    fi
    pull "$d/native" "$host" "$COLLECTOR_PORT" || {
        echo "FAIL: ${label}fixture-$name: native pull: $PULL_WHY"; stop_collector; continue; }
    stop_collector

    if ! fresh_session; then
        echo "FAIL: ${label}fixture-$name: $(oneline "$tmp/values.log")"; continue
    fi
    ok=1
    for f in "${files[@]}"; do
        if ! wine reg import "$f" >"$d/import.log" 2>&1; then
            echo "FAIL: ${label}fixture-$name: wine reg import $(basename "$f"):" \
                "$(oneline "$d/import.log")"
            ok=0; break
        fi
    done
    [ "$ok" = 1 ] || continue
    if ! start_collector "$d/wine" wine "$exe" --listen 127.0.0.1:0 "${cert[@]}"; then
        echo "FAIL: ${label}fixture-$name: exe: $COLLECTOR_WHY"; continue
    fi
    pull "$d/wine" "$host" "$COLLECTOR_PORT" || {
        echo "FAIL: ${label}fixture-$name: pull: $PULL_WHY"; stop_collector; continue; }
    stop_collector
    if why=$(python3 "$cmp_py" fixture "$d/wine/show.json" "$want" "$d/native/show.json"); then
        echo "PASS: ${label}fixture-$name"
    else
        echo "FAIL: ${label}fixture-$name: $why"
    fi
done
[ "$n" -gt 0 ] || echo "FAIL: fixtures: no fixture found in tests/fixtures/reg"
registry_restore "$tmp/system.reg.orig"
exit 0
