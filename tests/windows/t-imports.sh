#!/usr/bin/env bash
# The import check (tools/windows/check-imports) passes for both exes, and fails, as it must, on
# an exe importing a Windows 8 API and on one importing a function nobody has reviewed.
set -u
tmp="$TLSGATE_WIN_TMP"
chk="$TLSGATE_SOURCE_ROOT/tools/windows/check-imports"
for exe in "$TLSGATE_WIN_EXE" "$TLSGATE_WIN_EXE_X86"; do
    a=$(basename "$(dirname "$exe")")
    if "$chk" "$exe" 2>"$tmp/$a.err"; then
        echo "PASS: imports-$a-windows7"
    else
        echo "FAIL: imports-$a-windows7: $(grep -v FAILED "$tmp/$a.err" | head -n 3 | tr '\n' ' ')"
    fi
done

# Two small programs that must be refused.
cat >"$tmp/win8.c" <<'C'
#include <windows.h>
int main(void) { FILETIME t; GetSystemTimePreciseAsFileTime(&t); return (int)t.dwLowDateTime; }
C
cat >"$tmp/unreviewed.c" <<'C'
#include <windows.h>
int main(void) { return Beep(440, 1) ? 0 : 1; }
C
for t in win8 unreviewed; do
    if ! x86_64-w64-mingw32-gcc -D_WIN32_WINNT=0x0602 -o "$tmp/$t.exe" "$tmp/$t.c" \
        2>"$tmp/$t.cc.err"; then
        echo "FAIL: imports-check-refuses-$t: cannot compile the probe:" \
            "$(head -n 2 "$tmp/$t.cc.err")"
        continue
    fi
    if "$chk" "$tmp/$t.exe" 2>"$tmp/$t.err"; then
        echo "FAIL: imports-check-refuses-$t: check-imports accepted it"
    elif { [ $t = win8 ] &&
           grep -q 'GetSystemTimePreciseAsFileTime: a Windows 8' "$tmp/$t.err"; } ||
         { [ $t = unreviewed ] && grep -q 'Beep: not reviewed' "$tmp/$t.err"; }; then
        echo "PASS: imports-check-refuses-$t"
    else
        echo "FAIL: imports-check-refuses-$t: refused for another reason:" \
            "$(head -n 2 "$tmp/$t.err")"
    fi
done
exit 0
