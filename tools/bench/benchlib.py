"""benchlib — what the tools/bench scripts share: locating the binaries and the big database,
and running a command to measure its wall time and peak RSS (os.wait4's rusage of that child, so
no /usr/bin/time is needed)."""
import os
import subprocess
import sys
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


def measure(argv, stdout=subprocess.DEVNULL, env=None, ok=(0,)):
    """Runs argv; returns (seconds, peak RSS in MiB, exit code). Exits on an unexpected code."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=stdout, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok:
        sys.exit(f"bench: {argv[0]} exited {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024.0, proc.returncode
