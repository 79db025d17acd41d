#!/usr/bin/env python3
"""The collector stays reachable: hostile clients on loopback against a real tlsgate-collector
while an orchestrator (a client certificate signed by the fleet CA) keeps pulling.

    attack.py --build-dir DIR [--seconds N] [--attack stall|churn|slowloris|all]
              [--orchestrators] [--min-share FRACTION] [--keep DIR]

Attacks (each from 127.0.0.2..127.0.0.5, 16 connections per address, 64 in all; the
orchestrator pulls from 127.0.0.1):
  stall      connections that stop inside the TLS handshake: half send nothing, half send the
             first half of a ClientHello; each one closed by the server is opened again at once
  churn      64 connections opened, held half a second (the collector accepts them all and
             is at its cap), closed again, over and over (the "wedge")
  slowloris  a full TLS handshake without a client certificate, then a request header sent one
             byte every 3 seconds; each one closed by the server is opened again at once

For each attack: the collector is started afresh, the attack runs for N seconds (default 60)
while the orchestrator pulls GET /v1/readiness back to back (each pull: 5 s to connect and
answer, then a 0.1 s pause), then the attack stops and the orchestrator pulls until its first
success. One line per attack:

  attack=stall seconds=60 pulls=412 ok=412 share=100.0% first_ok_after_stop=0.004s

With --orchestrators the collector is started with "orchestrators": ["127.0.0.1"] (the
allow-list) instead of the default (anyone may connect). Exit 0 when every attack reached
--min-share (default 1.0) and the orchestrator got in after it stopped, 1 otherwise, 2 usage.
Only loopback addresses are used.
"""
import argparse
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HOST = "host1.chaos.test"
ATTACK_ADDRS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
PER_ADDR = 16
PULL_TIMEOUT = 5.0


def source_root():
    return os.environ.get("TLSGATE_SOURCE_ROOT") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_certs(out):
    subprocess.run([os.path.join(source_root(), "tools", "gen-certs"), out, HOST], check=True,
                   stdout=subprocess.DEVNULL)


def start_collector(build, work, certs, orchestrators):
    conf = {
        "listen": "127.0.0.1:0",
        "cert": os.path.join(certs, HOST + ".pem"),
        "key": os.path.join(certs, HOST + ".key"),
        "ca": os.path.join(certs, "ca.pem"),
        "facts": os.path.join(source_root(), "schema", "report.example.json"),
    }
    if orchestrators:
        conf["orchestrators"] = ["127.0.0.1"]
    path = os.path.join(work, "collector.json")
    with open(path, "w") as f:
        json.dump(conf, f)
    err = open(os.path.join(work, "collector.err"), "ab")
    p = subprocess.Popen([os.path.join(build, "collectors", "tlsgate-collector"), "--config",
                          path], stdout=subprocess.PIPE, stderr=err)
    line = p.stdout.readline().decode()
    marker = "https://127.0.0.1:"
    if marker not in line:
        p.kill()
        raise SystemExit("attack.py: the collector did not start: %r (see %s)" % (line, err.name))
    port = int(line.split(marker)[1].split()[0])
    return p, port


def stop_collector(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


class Orchestrator:
    def __init__(self, certs, port):
        self.port = port
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=os.path.join(certs, "ca.pem"))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(os.path.join(certs, "orchestrator.pem"),
                            os.path.join(certs, "orchestrator.key"))
        self.ctx = ctx
        self.failures = {}

    def pull(self):
        """One GET /v1/readiness within PULL_TIMEOUT seconds; True on a 200 with the report."""
        deadline = time.monotonic() + PULL_TIMEOUT
        try:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=PULL_TIMEOUT,
                                           source_address=("127.0.0.1", 0))
        except OSError as e:
            why = "connect:" + type(e).__name__
            self.failures[why] = self.failures.get(why, 0) + 1
            return False
        try:
            raw.settimeout(max(0.01, deadline - time.monotonic()))
            s = self.ctx.wrap_socket(raw, server_hostname=HOST)
            s.sendall(b"GET /v1/readiness HTTP/1.1\r\nHost: " + HOST.encode() +
                      b"\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.failures["timeout"] = self.failures.get("timeout", 0) + 1
                    return False
                s.settimeout(left)
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"HTTP/1.1 200") and b'"host":"' + HOST.encode() in data:
                return True
            why = "answer:" + (data[:12].decode("latin-1") or "none")
            self.failures[why] = self.failures.get(why, 0) + 1
            return False
        except (OSError, ssl.SSLError) as e:
            why = type(e).__name__
            self.failures[why] = self.failures.get(why, 0) + 1
            return False
        finally:
            raw.close()


def client_hello():
    """The bytes of a real TLS ClientHello (what a stalled handshake starts with)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_hostname=HOST)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outb.read()


class Attack(threading.Thread):
    """Keeps 64 hostile connections going until stop() (or, for churn, bursts of 64)."""

    def __init__(self, kind, port):
        super().__init__(daemon=True)
        self.kind, self.port = kind, port
        self.halt = threading.Event()
        self.opened = 0
        self.hello = client_hello()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ctx = ctx

    def stop(self):
        self.halt.set()
        self.join(30)

    def connect(self, addr):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        s.bind((addr, 0))
        s.connect(("127.0.0.1", self.port))
        self.opened += 1
        return s

    def open_one(self, i):
        addr = ATTACK_ADDRS[i % len(ATTACK_ADDRS)]
        try:
            s = self.connect(addr)
            if self.kind == "stall":
                if i % 2:
                    s.sendall(self.hello[:len(self.hello) // 2])
                return [s, 0.0]
            # slowloris: handshake without a certificate, then a byte at a time
            t = self.ctx.wrap_socket(s, server_hostname=HOST)
            return [t, 0.0]
        except (OSError, ssl.SSLError):
            return None

    def run(self):
        if self.kind == "churn":
            return self.run_churn()
        n = len(ATTACK_ADDRS) * PER_ADDR
        conns = [None] * n
        request = b"GET /v1/readiness HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nX-Pad: "
        sent = [0] * n
        while not self.halt.is_set():
            for i in range(n):
                if conns[i] is None:
                    conns[i] = self.open_one(i)
                    sent[i] = 0
            live = [c[0] for c in conns if c]
            try:
                readable, _, _ = select.select(live, [], [], 0.2)
            except (OSError, ValueError):
                readable = live
            for i in range(n):
                c = conns[i]
                if not c:
                    continue
                closed = False
                if c[0] in readable:
                    try:
                        c[0].setblocking(False)
                        closed = c[0].recv(4096) == b""
                    except (ssl.SSLWantReadError, BlockingIOError):
                        closed = False
                    except (OSError, ssl.SSLError):
                        closed = True
                    finally:
                        try:
                            c[0].setblocking(True)
                        except OSError:
                            closed = True
                if not closed and self.kind == "slowloris" and time.monotonic() - c[1] >= 3:
                    try:
                        c[0].sendall(request[sent[i] % len(request):][:1])
                        sent[i] += 1
                        c[1] = time.monotonic()
                    except (OSError, ssl.SSLError):
                        closed = True
                if closed:
                    try:
                        c[0].close()
                    except OSError:
                        pass
                    conns[i] = None
        for c in conns:
            if c:
                c[0].close()

    def run_churn(self):
        n = len(ATTACK_ADDRS) * PER_ADDR
        while not self.halt.is_set():
            burst = []
            for i in range(n):
                try:
                    burst.append(self.connect(ATTACK_ADDRS[i % len(ATTACK_ADDRS)]))
                except OSError:
                    pass
            # Held until the collector has accepted them all (its cap), then all closed at once.
            self.halt.wait(0.5)
            for s in burst:
                s.close()
            self.halt.wait(0.2)


def run_attack(kind, args, certs):
    work = tempfile.mkdtemp(prefix="chaos-" + kind + "-", dir=args.keep)
    proc, port = start_collector(args.build_dir, work, certs, args.orchestrators)
    orch = Orchestrator(certs, port)
    try:
        if not orch.pull():
            raise SystemExit("attack.py: the collector does not answer before the attack")
        atk = Attack(kind, port)
        atk.start()
        end = time.monotonic() + args.seconds
        pulls = ok = 0
        while time.monotonic() < end:
            pulls += 1
            ok += orch.pull()
            time.sleep(0.1)
        atk.stop()
        stopped = time.monotonic()
        first = None
        while time.monotonic() - stopped < 60:
            if orch.pull():
                first = time.monotonic() - stopped
                break
            time.sleep(0.05)
        alive = proc.poll() is None
    finally:
        stop_collector(proc)
    share = ok / pulls if pulls else 0.0
    print("attack=%s seconds=%g pulls=%d ok=%d share=%.1f%% first_ok_after_stop=%s "
          "attack_connections=%d%s%s" % (
              kind, args.seconds, pulls, ok, 100.0 * share,
              "%.3fs" % first if first is not None else "never", atk.opened,
              "" if alive else " COLLECTOR-DIED",
              "".join(" failed:%s=%d" % kv for kv in sorted(orch.failures.items()))), flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return share >= args.min_share and first is not None and alive


def main():
    ap = argparse.ArgumentParser(description="hostile clients against tlsgate-collector")
    ap.add_argument("--build-dir", default=os.environ.get("TLSGATE_BUILD_ROOT"))
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--attack", choices=["stall", "churn", "slowloris", "all"], default="all")
    ap.add_argument("--orchestrators", action="store_true")
    ap.add_argument("--min-share", type=float, default=1.0)
    ap.add_argument("--keep", default=None, help="keep the work folders under DIR")
    args = ap.parse_args()
    if not args.build_dir:
        ap.error("--build-dir is required (or TLSGATE_BUILD_ROOT)")
    certs = tempfile.mkdtemp(prefix="chaos-certs-")
    try:
        make_certs(certs)
        kinds = ["stall", "churn", "slowloris"] if args.attack == "all" else [args.attack]
        good = all([run_attack(k, args, certs) for k in kinds])
    finally:
        shutil.rmtree(certs, ignore_errors=True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
