#!/usr/bin/env bash
# A second tools/build-windows (tools/test has just run one) builds no dependency: both
# architectures come from the cache and only tlsgate is compiled.
set -u
tmp="$TLSGATE_WIN_TMP"
if ! "$TLSGATE_SOURCE_ROOT/tools/build-windows" all >"$tmp/out" 2>"$tmp/err"; then
    echo "FAIL: cache-warm-build: tools/build-windows failed: $(tail -n 2 "$tmp/err" | tr '\n' ' ')"
    exit 0
fi
for a in x86_64 i686; do
    if grep -q "build-windows: $a: dependencies cached at" "$tmp/err" &&
        ! grep -q "build-deps: $a:" "$tmp/err"; then
        echo "PASS: cache-warm-$a-builds-no-dependency"
    else
        echo "FAIL: cache-warm-$a-builds-no-dependency:" \
            "$(grep "$a" "$tmp/err" | head -n 2 | tr '\n' ' ')"
    fi
done
exit 0
