#!/usr/bin/env python3
"""Collectors for the daemon's tests: well-behaved and misbehaving HTTPS peers on loopback.

    peer.py --ca CA.pem SPEC...

Each SPEC is MODE,CERT,KEY[,FILE] and gets its own listening port on 127.0.0.1 (chosen by the
kernel). When every port listens, one line is printed on stdout: the ports, space-separated,
in SPEC order. The process serves until it is killed or its stdin reaches EOF.

Modes (the TLS ones require a client certificate signed by CA, like the real collector):
  good     200 with FILE as the body (application/json), FILE read anew for each request
  late     like good, after a one-second pause
  status   503 with a small body
  silent   accepts TCP and never says anything (no TLS handshake)
  slow     200, Content-Length 65536, then one byte every 200 ms
  huge     200 with a 10 MiB body
  badjson  200 with a body that is not JSON
"""
import os
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from peerlib import tls_accept  # noqa: E402


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data


def respond(conn, status, body, content_type="application/json"):
    head = (
        "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (status, content_type, len(body))
    ).encode()
    conn.sendall(head + body)


def serve_tls(mode, conn, ctx, body):
    tls = tls_accept(ctx, conn)
    if tls is None:
        return
    try:
        if read_request(tls) is None:
            return
        if mode == "late":
            time.sleep(1.0)
        if mode in ("good", "late"):
            with open(body, "rb") as f:
                respond(tls, "200 OK", f.read())
        elif mode == "status":
            respond(tls, "503 Service Unavailable", b'{"error":"busy"}')
        elif mode == "badjson":
            respond(tls, "200 OK", b"{this is not json")
        elif mode == "huge":
            size = 10 * 1024 * 1024
            tls.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % size
            )
            block = b'{"pad":"' + b"a" * 65520 + b'"}\n'
            sent = 0
            while sent < size:
                n = min(len(block), size - sent)
                tls.sendall(block[:n])
                sent += n
        elif mode == "slow":
            tls.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 65536\r\n"
                b"Connection: close\r\n\r\n"
            )
            for _ in range(65536):
                tls.sendall(b" ")
                time.sleep(0.2)
    except (ssl.SSLError, OSError):
        pass
    finally:
        try:
            tls.close()
        except OSError:
            pass


def serve(mode, listener, ctx, body):
    held = []
    while True:
        conn, _ = listener.accept()
        if mode == "silent":
            held.append(conn)  # kept open, never answered
            continue
        threading.Thread(target=serve_tls, args=(mode, conn, ctx, body), daemon=True).start()


def main():
    args = sys.argv[1:]
    if len(args) < 3 or args[0] != "--ca":
        sys.stderr.write(__doc__)
        return 2
    ca = args[1]
    ports = []
    for spec in args[2:]:
        parts = spec.split(",")
        mode, cert, key = parts[0], parts[1], parts[2]
        body = parts[3] if len(parts) > 3 else None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        ports.append(listener.getsockname()[1])
        threading.Thread(target=serve, args=(mode, listener, ctx, body), daemon=True).start()
    sys.stdout.write(" ".join(str(p) for p in ports) + "\n")
    sys.stdout.flush()
    # Ends when the test closes our stdin (or kills us): no orphan survives a crashed test.
    while sys.stdin.buffer.read(1):
        pass
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
