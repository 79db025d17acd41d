# Helpers for tests/windows/t-*.sh (sourced). Needs the environment tests/windows/run sets.

# oneline FILE: the file's text on one line (CR/LF as spaces), cut to 300 characters.
oneline() { tr '\r\n' '  ' <"$1" | cut -c1-300; }

# start_collector OUTPREFIX CMD...: starts a collector in the background, waits (60 s at most)
# for the "serving ... :PORT" line; sets COLLECTOR_PID and COLLECTOR_PORT. 0, or 1 with the
# reason in COLLECTOR_WHY.
start_collector() {
    local out="$1"; shift
    "$@" >"$out.out" 2>"$out.err" &
    COLLECTOR_PID=$!
    COLLECTOR_PORT=
    local i
    for i in $(seq 1 600); do
        COLLECTOR_PORT=$(sed -n 's/^tlsgate-collector: serving .*:\([0-9][0-9]*\) (source .*/\1/p' \
            "$out.out" 2>/dev/null | tr -d '\r')
        [ -n "$COLLECTOR_PORT" ] && return 0
        if ! kill -0 "$COLLECTOR_PID" 2>/dev/null; then
            wait "$COLLECTOR_PID"
            COLLECTOR_WHY="exited $? before serving: $(tr '\r\n' '  ' <"$out.err" | cut -c1-300)"
            return 1
        fi
        sleep 0.1
    done
    COLLECTOR_WHY="no 'serving' line within 60 s"
    stop_collector
    return 1
}

stop_collector() {
    [ -n "${COLLECTOR_PID:-}" ] || return 0
    kill "$COLLECTOR_PID" 2>/dev/null
    local i
    for i in $(seq 1 100); do
        kill -0 "$COLLECTOR_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$COLLECTOR_PID" 2>/dev/null
    wait "$COLLECTOR_PID" 2>/dev/null
    COLLECTOR_PID=
}

# pull DIR HOST PORT: tlsgate init + inventory + collect + host show --json > DIR/show.json.
# 0, or 1 with the reason in PULL_WHY.
pull() {
    local dir="$1" host="$2" port="$3"
    mkdir -p "$dir"
    printf 'name,site,roles,collector,os\n%s,PS1,,127.0.0.1:%s,\n' "$host" "$port" >"$dir/inv.csv"
    printf '{"tls": {"ca": "%s", "cert": "%s", "key": "%s"}}\n' "$TLSGATE_CERTS/ca.pem" \
        "$TLSGATE_CERTS/orchestrator.pem" "$TLSGATE_CERTS/orchestrator.key" >"$dir/cfg.json"
    local t=("$TLSGATE_BUILD/orchestrator/tlsgate" --db "$dir/t.db" --config "$dir/cfg.json")
    rm -f "$dir/t.db"
    if ! "${t[@]}" init >"$dir/log" 2>&1 || ! "${t[@]}" inventory import "$dir/inv.csv" \
        >>"$dir/log" 2>&1 || ! "${t[@]}" collect >>"$dir/log" 2>&1; then
        PULL_WHY="tlsgate failed: $(tail -n 2 "$dir/log" | tr '\n' ' ')"
        return 1
    fi
    if ! grep -q "^ok $host" "$dir/log"; then
        PULL_WHY="collect did not store a report: $(grep -m1 failed "$dir/log")"
        return 1
    fi
    "${t[@]}" host show "$host" --json >"$dir/show.json" 2>>"$dir/log" || {
        PULL_WHY="host show failed"; return 1; }
}

# A fresh copy of the prefix's registry: the wineserver is stopped first (it keeps the registry
# in memory and writes it back when it exits).
registry_save() { wineserver -w; cp "$WINEPREFIX/system.reg" "$1"; }
registry_restore() { wineserver -k 2>/dev/null; wineserver -w; cp "$1" "$WINEPREFIX/system.reg"; }
