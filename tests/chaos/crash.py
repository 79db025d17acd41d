#!/usr/bin/env python3
"""Failures lose nothing: SIGKILL at random points and racing commands, with the database
checked after each (the crash half of issue 19's campaign, kept).

    crash.py --build-dir DIR [--kills N] [--import-rows N] [--import-kills N] [--races N]
             [--racers N] [--seed S] [--keep DIR]

1. daemon: a fleet (tools/fleetsim, 60 hosts refreshing every second) and `tlsgate daemon`
   killed with SIGKILL N times (default 6) at a random point of its rounds. After each kill:
   PRAGMA integrity_check is ok; every report has its verdicts; each report's blockers and
   warnings equal its failed verdicts of that severity; no host's collected_at went back.
2. import: `tlsgate inventory import` of a generated file of N rows (default 100000) killed with
   SIGKILL at random points: the hosts are exactly those before, or those before plus the file.
3. race: N rounds (default 3) of M concurrent `tlsgate phase advance --site PS1` (default 8) on
   a site whose clients are not ready: exactly one moves the site (inventory -> clients), the
   others are refused (exit 1), phase_history gains one row and the audit log one row per
   command; then `phase rollback` for the next round.

Prints what it did and exits 0 when every check held, 1 otherwise (the failures named), 2 on
usage errors. Only loopback addresses are used.
"""
import argparse
import csv
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what, flush=True)
    return cond


def source_root():
    return os.environ.get("TLSGATE_SOURCE_ROOT") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Env:
    def __init__(self, build, work):
        self.build, self.work = build, work
        self.db = os.path.join(work, "tlsgate.db")
        self.config = os.path.join(work, "tlsgate.json")
        self.env = dict(os.environ, TLSGATE_DB=self.db, TLSGATE_CONFIG=self.config,
                        TLSGATE_USER="chaos")

    def tlsgate(self, *args, **kw):
        return [os.path.join(self.build, "orchestrator", "tlsgate")] + list(args)

    def run(self, *args, check_rc=True):
        p = subprocess.run(self.tlsgate(*args), env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if check_rc and p.returncode != 0:
            raise SystemExit("crash.py: tlsgate %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                                   p.stderr.strip()))
        return p


def db_invariants(db, last_seen, label):
    """The checks after a kill; last_seen maps host_id -> the newest collected_at seen."""
    con = sqlite3.connect(db, timeout=30)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        check(ok == "ok", "%s: integrity_check says %s" % (label, ok))
        orphan = con.execute("SELECT count(*) FROM report r WHERE NOT EXISTS "
                             "(SELECT 1 FROM verdict v WHERE v.host_id = r.host_id)").fetchone()[0]
        check(orphan == 0, "%s: %d reports without verdicts" % (label, orphan))
        bad = con.execute(
            "SELECT count(*) FROM report r WHERE r.blockers <> (SELECT count(*) FROM verdict v "
            "WHERE v.host_id = r.host_id AND v.pass = 0 AND v.severity = 'blocker') OR "
            "r.warnings <> (SELECT count(*) FROM verdict v WHERE v.host_id = r.host_id AND "
            "v.pass = 0 AND v.severity = 'warning')").fetchone()[0]
        check(bad == 0, "%s: %d reports whose blockers/warnings disagree with their verdicts" %
              (label, bad))
        rows = con.execute("SELECT host_id, collected_at FROM report").fetchall()
        back = [h for h, t in rows if t < last_seen.get(h, 0)]
        check(not back, "%s: %d hosts went back to an older report" % (label, len(back)))
        for h, t in rows:
            last_seen[h] = max(t, last_seen.get(h, 0))
        return len(rows)
    finally:
        con.close()


def start_fleet(env, hosts, mix):
    certs = os.path.join(env.work, "certs")
    subprocess.run([os.path.join(source_root(), "tools", "gen-certs"), certs], check=True,
                   stdout=subprocess.DEVNULL)
    root = source_root()
    for attempt in range(8):
        base = random.randrange(20000, 30000)
        log = open(os.path.join(env.work, "fleetsim.log"), "w")
        p = subprocess.Popen(
            [os.path.join(env.build, "tools", "fleetsim"), "--certs", certs,
             "--fixtures", os.path.join(root, "tests", "fixtures", "reg"),
             "--fixtures", os.path.join(root, "tools", "fleetsim", "fixtures"),
             "--hosts", str(hosts), "--sites", "PS1", "--mps", "1", "--dps", "1",
             "--procs", "1", "--interval", "1", "--base-port", str(base),
             "--inventory", os.path.join(env.work, "inventory.csv"),
             "--control", os.path.join(env.work, "fleetsim.sock"), "--mix", mix],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            if "fleetsim: ready" in open(log.name).read():
                break
            time.sleep(0.1)
        if p.poll() is None:
            break
        said = open(log.name).read()
        if "is taken" not in said and "in use" not in said:
            raise SystemExit("crash.py: fleetsim did not start: " + said)
    else:
        raise SystemExit("crash.py: no free port range for fleetsim")
    with open(env.config, "w") as f:
        f.write('{"tls": {"ca": "certs/ca.pem", "cert": "certs/orchestrator.pem", '
                '"key": "certs/orchestrator.key"}, "interval": 1, "jitter": 0.1, '
                '"concurrency": 16, "connect_timeout": 2, "timeout": 5, "stale_after": 86400, '
                '"backoff_max": 5, "log_level": "warn"}')
    return p


def daemon_kills(env, kills):
    env.run("init")
    env.run("inventory", "import", os.path.join(env.work, "inventory.csv"))
    last_seen = {}
    reports = 0
    for i in range(kills):
        d = subprocess.Popen(env.tlsgate("daemon"), env=env.env, stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(env.work, "daemon.log"), "a"))
        time.sleep(random.uniform(0.05, 2.5))
        d.send_signal(signal.SIGKILL)
        d.wait()
        reports = db_invariants(env.db, last_seen, "daemon kill %d" % (i + 1))
    print("daemon: %d SIGKILLs, %d hosts with a report, invariants %s" % (
        kills, reports, "held" if not FAILURES else "BROKEN"), flush=True)
    check(reports > 0, "daemon: no report was ever stored (the check could not fail)")


def host_names(db):
    con = sqlite3.connect(db, timeout=30)
    try:
        return set(r[0] for r in con.execute("SELECT name FROM host"))
    finally:
        con.close()


def import_kills(env, rows, kills):
    db = os.path.join(env.work, "import.db")
    ienv = dict(env.env, TLSGATE_DB=db)
    subprocess.run(env.tlsgate("init"), env=ienv, check=True, stdout=subprocess.DEVNULL)
    big = os.path.join(env.work, "big.csv")
    with open(big, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "site", "roles", "collector", "os"])
        for i in range(rows):
            w.writerow(["ws%07d.big.example.com" % i, "BIG", "", "127.0.0.1:8443",
                        "Windows 10"])
    before = host_names(db)
    # One whole import, timed, on a copy: how long a kill has to land in.
    probe = os.path.join(env.work, "probe.db")
    subprocess.run(env.tlsgate("init"), env=dict(ienv, TLSGATE_DB=probe), check=True,
                   stdout=subprocess.DEVNULL)
    t0 = time.monotonic()
    subprocess.run(env.tlsgate("inventory", "import", big), env=dict(ienv, TLSGATE_DB=probe),
                   check=True, stdout=subprocess.DEVNULL)
    whole = time.monotonic() - t0
    check(len(host_names(probe)) == rows, "import: the whole import did not add %d hosts" % rows)
    outcomes = {"unchanged": 0, "imported": 0}
    for i in range(kills):
        p = subprocess.Popen(env.tlsgate("inventory", "import", big), env=ienv,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(random.uniform(0, whole * 1.1))
        p.send_signal(signal.SIGKILL)
        p.wait()
        con = sqlite3.connect(db, timeout=30)
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        con.close()
        check(ok == "ok", "import kill %d: integrity_check says %s" % (i + 1, ok))
        now = host_names(db)
        if now == before:
            outcomes["unchanged"] += 1
        elif len(now) == len(before) + rows and before <= now:
            outcomes["imported"] += 1
            # Next kill starts from the imported state again: re-init a fresh database.
            os.remove(db)
            for side in ("-wal", "-shm"):
                if os.path.exists(db + side):
                    os.remove(db + side)
            subprocess.run(env.tlsgate("init"), env=ienv, check=True, stdout=subprocess.DEVNULL)
        else:
            check(False, "import kill %d: %d hosts, neither %d (before) nor %d (all)" % (
                i + 1, len(now), len(before), len(before) + rows))
    print("import: %d rows (whole import %.2fs), %d SIGKILLs: %d left it unchanged, %d after "
          "it committed" % (rows, whole, kills, outcomes["unchanged"], outcomes["imported"]),
          flush=True)


def phase_races(env, rounds, racers):
    env.run("collect")  # every host reported: inventory's exit criterion holds
    con = sqlite3.connect(env.db, timeout=30)
    site = con.execute("SELECT phase FROM site WHERE code = 'PS1'").fetchone()[0]
    con.close()
    check(site == "inventory", "race: PS1 starts in %s, not inventory" % site)
    for r in range(rounds):
        con = sqlite3.connect(env.db, timeout=30)
        hist0 = con.execute("SELECT count(*) FROM phase_history").fetchone()[0]
        audit0 = con.execute("SELECT max(id) FROM audit").fetchone()[0] or 0
        con.close()
        procs = [subprocess.Popen(env.tlsgate("phase", "advance", "--site", "PS1", "--reason",
                                              "race %d" % r),
                                  env=env.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(racers)]
        codes = sorted(p.wait() for p in procs)
        con = sqlite3.connect(env.db, timeout=30)
        phase = con.execute("SELECT phase FROM site WHERE code = 'PS1'").fetchone()[0]
        hist = con.execute("SELECT from_phase, to_phase FROM phase_history WHERE id > ? "
                           "ORDER BY id", (0,)).fetchall()[hist0:]
        audit = con.execute("SELECT command, outcome FROM audit WHERE id > ?",
                            (audit0,)).fetchall()
        con.close()
        label = "race %d" % (r + 1)
        check(codes.count(0) == 1, "%s: %d advances succeeded (exit codes %s)" % (
            label, codes.count(0), codes))
        check(codes.count(1) == racers - 1, "%s: exit codes %s" % (label, codes))
        check(phase == "clients", "%s: PS1 is in %s" % (label, phase))
        check(hist == [("inventory", "clients")], "%s: phase_history gained %s" % (label, hist))
        adv = [a for a in audit if "phase advance" in a[0]]
        check(len(adv) == racers, "%s: %d audit rows for %d advances" % (label, len(adv),
                                                                         racers))
        env.run("phase", "rollback", "--site", "PS1", "--reason", "race %d done" % r)
    print("race: %d rounds of %d concurrent phase advances: one winner each, history and audit "
          "%s" % (rounds, racers, "consistent" if not FAILURES else "CHECK FAILURES"),
          flush=True)


def main():
    ap = argparse.ArgumentParser(description="SIGKILL and races against tlsgate's database")
    ap.add_argument("--build-dir", default=os.environ.get("TLSGATE_BUILD_ROOT"))
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--import-rows", type=int, default=100000)
    ap.add_argument("--import-kills", type=int, default=4)
    ap.add_argument("--races", type=int, default=3)
    ap.add_argument("--racers", type=int, default=8)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", default=None, help="keep the work folder under DIR")
    args = ap.parse_args()
    if not args.build_dir:
        ap.error("--build-dir is required (or TLSGATE_BUILD_ROOT)")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    print("crash: seed %d (--seed %d repeats the kill points)" % (seed, seed), flush=True)
    work = tempfile.mkdtemp(prefix="chaos-crash-", dir=args.keep)
    env = Env(os.path.abspath(args.build_dir), work)
    fleet = None
    try:
        # Unpatched Windows 7 clients: the site can leave inventory, never clients.
        fleet = start_fleet(env, 60, "win7-sp1-x64-unpatched:1")
        daemon_kills(env, args.kills)
        phase_races(env, args.races, args.racers)
        import_kills(env, args.import_rows, args.import_kills)
    finally:
        if fleet:
            fleet.terminate()
            fleet.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if FAILURES:
        print("crash: %d checks failed" % len(FAILURES))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
