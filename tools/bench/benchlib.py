"""benchlib — what the tools/bench scripts share: locating the binaries and the big database,
and running a command to measure its wall time and peak RSS.

Peak RSS comes from GNU time (/usr/bin/time, Debian package `time`), not from os.wait4 here: a
child forked from this Python process starts with Python's own resident set counted in its
ru_maxrss (Linux keeps the pre-exec high-water mark), which would hide anything smaller than the
interpreter. /usr/bin/time is a small C program that forks the command itself."""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tlsgate():
    path = os.environ.get("TLSGATE", os.path.join(ROOT, "build", "orchestrator", "tlsgate"))
    if not os.access(path, os.X_OK):
        sys.exit(f"bench: {path} not built (ninja -C build)")
    return path


def big_db(argv):
    """The database named on the command line, else build/bench/big.db (generated if missing)."""
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        sys.exit(f"usage: {argv[0]} [BIG.db]   (default build/bench/big.db, made by gen-bigdb)")
    db = argv[1] if len(argv) == 2 else os.path.join(ROOT, "build", "bench", "big.db")
    if not os.path.exists(db):
        os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
        subprocess.run([os.path.join(ROOT, "tools", "bench", "gen-bigdb"), db], check=True,
                       env=dict(os.environ, TLSGATE=tlsgate()))
    return db


def bench_now(db):
    out = subprocess.run(["sqlite3", db, "SELECT value FROM meta WHERE key = 'bench.now'"],
                         check=True, capture_output=True, text=True).stdout.strip()
    if not out:
        sys.exit(f"bench: {db} has no meta 'bench.now' (not made by gen-bigdb)")
    return out


GNU_TIME = "/usr/bin/time"


def measure(argv, stdout=subprocess.DEVNULL, env=None, ok=(0,)):
    """Runs argv; returns (seconds, peak RSS in MiB, exit code). Exits on an unexpected code."""
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"bench: {GNU_TIME} missing (tools/bootstrap installs the `time` package)")
    with tempfile.NamedTemporaryFile(mode="r", prefix="bench-rss-") as rss:
        start = time.monotonic()
        code = subprocess.run([GNU_TIME, "-q", "-f", "%M", "-o", rss.name] + argv,
                              stdout=stdout, env=env).returncode
        seconds = time.monotonic() - start
        if code not in ok:
            sys.exit(f"bench: {argv[0]} exited {code}")
        kib = int(rss.read().split()[-1])
    return seconds, kib / 1024.0, code
