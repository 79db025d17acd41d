"""peerlib.py: the pieces the loopback test peers share (tests/peers/*.py, tests/daemon/peer.py,
tests/enroll/peer.py): exact reads, a TLS accept that drops a failed handshake, and the
"ACCEPT 127.0.0.1:PORT" listener that ends when the test closes the peer's stdin.

The peers outside tests/peers put that folder on sys.path before importing it.
"""
import os
import socket
import ssl
import sys
import threading


def recv_exact(sock, n):
    """Exactly n bytes from sock; EOFError when it closes first."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def tls_accept(ctx, conn):
    """The server side of a TLS handshake on conn, or None (conn closed) when it fails."""
    try:
        return ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        conn.close()
        return None


def serve_loopback(handle, port=0, backlog=16):
    """Listens on 127.0.0.1:port, prints "ACCEPT 127.0.0.1:PORT", runs handle(conn) in a thread
    per connection, and exits the process when stdin reaches EOF (no orphan outlives a test)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(backlog)
    print("ACCEPT 127.0.0.1:%d" % srv.getsockname()[1], flush=True)

    def watch_stdin():
        sys.stdin.read()
        srv.close()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    while True:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(conn,), daemon=True).start()
