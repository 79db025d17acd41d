#!/usr/bin/env python3
"""Enrollment servers for the collector's enrollment tests (suite enrollcli): a well-behaved
one that really signs requests, and hostile ones, each on its own loopback port.

    peer.py --certs DIR [--days N] [--renew-days N] [--log FILE] SPEC...

SPEC is MODE,NAME: the server presents DIR/NAME.pem with DIR/NAME.key (tools/gen-certs).
When every port listens, one line is printed on stdout: the ports, space-separated, in SPEC
order. The process serves until its stdin reaches EOF or it is killed. Every request is logged
to --log as "MODE PATH CLIENT_CN_OR_- STATUS".

Modes:
  issue      /v1/enroll signs the request with DIR/ca.pem + DIR/ca.key (openssl x509 -req,
             --days days, SAN and EKU serverAuth+clientAuth set here); /v1/renew does the same
             (--renew-days) and needs a client certificate from DIR/ca.pem
  pending    202 {"status":"pending","request":7,"retry_after":1}
  refuse     403 {"error":"the site secret is wrong or retired"}
  busy       503 with Retry-After: 2
  huge       200 with a 200000-byte body (over the client's 64 KiB cap)
  truncated  200 announcing 5000 bytes, sending 100, then closing
  nolength   200 without Content-Length, body until close
  slow       200 announcing 5000 bytes, then one byte every 200 ms for ever
  silent     accepts TCP and never answers (no TLS handshake)
"""
import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from peerlib import tls_accept  # noqa: E402

LOG_LOCK = threading.Lock()


def log(args, line):
    if args.log:
        with LOG_LOCK, open(args.log, "a") as f:
            f.write(line + "\n")


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None, None
        data += chunk
        if len(data) > 65536:
            return None, None
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            break
        body += chunk
    return lines[0].split(" ")[1], body


def respond(conn, status, obj, extra=""):
    body = json.dumps(obj).encode()
    conn.sendall(
        ("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s"
         "Connection: close\r\n\r\n" % (status, len(body), extra)).encode() + body)


def sign(args, csr_pem, days):
    """The request's CN becomes CN and SAN; the answer is the certificate PEM."""
    with tempfile.TemporaryDirectory() as tmp:
        csr = os.path.join(tmp, "req.pem")
        with open(csr, "w") as f:
            f.write(csr_pem)
        subj = subprocess.run(["openssl", "req", "-in", csr, "-noout", "-subject",
                               "-nameopt", "multiline"], capture_output=True, text=True,
                              check=True).stdout
        cn = [ln.split("=", 1)[1].strip() for ln in subj.splitlines() if "commonName" in ln][0]
        ext = os.path.join(tmp, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n"
                    "keyUsage=digitalSignature\n" % cn)
        out = subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA",
                              os.path.join(args.certs, "ca.pem"), "-CAkey",
                              os.path.join(args.certs, "ca.key"), "-days", str(days),
                              "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
                              "-extfile", ext], capture_output=True, text=True, check=True)
        return out.stdout


def serve_issue(args, tls, path, body):
    try:
        req = json.loads(body)
    except ValueError:
        return respond(tls, "400 Bad Request", {"error": "not JSON"}), 400
    peer = tls.getpeercert()
    with open(os.path.join(args.certs, "ca.pem")) as f:
        ca = f.read()
    if path == "/v1/enroll":
        if not req.get("secret") or not req.get("name"):
            return respond(tls, "403 Forbidden", {"error": "no secret"}), 403
        cert = sign(args, req["csr"], args.days)
    elif path == "/v1/renew":
        if not peer:
            return respond(tls, "403 Forbidden", {"error": "no client certificate"}), 403
        cert = sign(args, req["csr"], args.renew_days)
    else:
        return respond(tls, "404 Not Found", {"error": "no such path"}), 404
    respond(tls, "200 OK", {"status": "issued", "certificate": cert, "ca": ca,
                            "not_after": int(time.time()) + 86400 * args.days})
    return None, 200


def serve(args, mode, conn, ctx):
    if mode == "silent":
        time.sleep(3600)
        return
    tls = tls_accept(ctx, conn)
    if tls is None:
        return
    try:
        path, body = read_request(tls)
        if path is None:
            return
        peer = tls.getpeercert()
        cn = "-"
        if peer:
            cn = dict(x[0] for x in peer["subject"]).get("commonName", "-")
        status = 0
        if mode == "issue":
            _, status = serve_issue(args, tls, path, body)
        elif mode == "pending":
            respond(tls, "202 Accepted", {"status": "pending", "request": 7, "retry_after": 1})
            status = 202
        elif mode == "refuse":
            respond(tls, "403 Forbidden", {"error": "the site secret is wrong or retired"})
            status = 403
        elif mode == "busy":
            respond(tls, "503 Service Unavailable", {"error": "store busy"}, "Retry-After: 2\r\n")
            status = 503
        elif mode == "huge":
            body = b"x" * 200000
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + body)
            status = 200
        elif mode == "truncated":
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"{" * 100)
            status = 200
        elif mode == "nolength":
            tls.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"status\":\"issued\"}")
            status = 200
        elif mode == "slow":
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
            status = 200
            while True:
                tls.sendall(b"x")
                time.sleep(0.2)
        log(args, "%s %s %s %d" % (mode, path, cn, status))
    except (ssl.SSLError, OSError, subprocess.CalledProcessError) as e:
        log(args, "%s error %s" % (mode, e))
    finally:
        try:
            tls.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--certs", required=True)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--renew-days", type=int, default=61)
    ap.add_argument("--log")
    ap.add_argument("specs", nargs="+")
    args = ap.parse_args()
    listeners = []
    for spec in args.specs:
        mode, name = spec.split(",")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(os.path.join(args.certs, name + ".pem"),
                            os.path.join(args.certs, name + ".key"))
        ctx.load_verify_locations(os.path.join(args.certs, "ca.pem"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        listeners.append((mode, s, ctx))

    def accept_loop(mode, s, ctx):
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(args, mode, conn, ctx), daemon=True).start()

    for mode, s, ctx in listeners:
        threading.Thread(target=accept_loop, args=(mode, s, ctx), daemon=True).start()
    print(" ".join(str(s.getsockname()[1]) for _, s, _ in listeners), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
