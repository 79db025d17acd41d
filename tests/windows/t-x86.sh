#!/usr/bin/env bash
# The i686 exe: where this Wine can run 32-bit programs (a WoW64 prefix, which needs the wine32
# package), it must yield for every fixture what the x64 exe yields: it reads the 64-bit view and
# the Wow6432Node view explicitly (KEY_WOW64_64KEY / KEY_WOW64_32KEY), not its redirected view.
# Elsewhere each case is skipped with the reason (a skip is not a pass). The build and the
# import check of the i686 exe run in tools/build-windows and t-imports.sh regardless.
set -u
tmp="$TLSGATE_WIN_TMP"
if ! timeout 120 wine "$TLSGATE_WIN_EXE_X86" --help >"$tmp/help.out" 2>"$tmp/help.err" \
    || ! grep -q '^usage: tlsgate-collector' "$tmp/help.out"; then
    why=$(tr '\r\n' '  ' <"$tmp/help.err" | cut -c1-200)
    [ -n "$why" ] || why="wine ran it without printing the usage"
    dpkg-query -W -f='${Status}' wine32:i386 2>/dev/null | grep -q 'install ok installed' \
        || why="wine32 (i386) is not installed, so this Wine runs no 32-bit program"
    echo "SKIP: x86-run: $why"
    exit 0
fi
echo "PASS: x86-runs-under-wine"
FIXTURE_EXE="$TLSGATE_WIN_EXE_X86" FIXTURE_HOST=wine-x86.test FIXTURE_LABEL=x86- \
    exec "$(dirname "$0")/t-fixtures.sh"
