#!/usr/bin/env python3
"""rc4_peer.py: a raw stand-in for a server that speaks TLS 1.0 only with RC4, for the probe's
tests (test_probe.c).

No real RC4 server can be had here: Debian's OpenSSL 3 (and so Python's ssl and s_server) has no
RC4 at all. This peer reads the ClientHello bytes itself and answers the way such a server does
up to its ServerHello, which is all the probe reads:
  - a ClientHello that offers no RC4 suite (0x0004, 0x0005): a fatal handshake_failure alert;
  - one that offers RC4, by --mode:
      rc4     a ServerHello for TLS 1.0 (or the client's version when lower) choosing
              TLS_RSA_WITH_RC4_128_SHA, then the connection closes;
      never   a handshake_failure alert as well (a server that really refuses);
      silent  the connection closes without an answer (neither accepted nor refused);
      garbage bytes that are no TLS record (neither accepted nor refused).
tds_peer.py --rc4 MODE imports answer() to do the same inside TDS packets.
It never completes a handshake: the probe needs only to know whether the version was taken.

Usage: rc4_peer.py --mode rc4|never|silent|garbage
Prints "ACCEPT 127.0.0.1:PORT" once listening (loopback only), serves until killed or until its
stdin closes.
"""
import argparse
import os
import struct

from peerlib import recv_exact, serve_loopback

RC4_SUITES = {0x0004, 0x0005}
ALERT_HANDSHAKE_FAILURE = b"\x15\x03\x01\x00\x02\x02\x28"


def parse_client_hello(record):
    """(client_version, suites) of the ClientHello in one whole record (header included)."""
    typ, _ver, length = struct.unpack(">BHH", record[:5])
    body = record[5:5 + length]
    if typ != 0x16 or len(body) != length or body[0] != 1:
        raise ValueError("not a ClientHello")
    version = struct.unpack(">H", body[4:6])[0]
    at = 6 + 32
    at += 1 + body[at]  # session id
    n = struct.unpack(">H", body[at:at + 2])[0]
    suites = {struct.unpack(">H", body[at + 2 + i:at + 4 + i])[0] for i in range(0, n, 2)}
    return version, suites


def server_hello(version):
    body = struct.pack(">H", version) + os.urandom(32) + b"\x00" + b"\x00\x05" + b"\x00"
    hs = b"\x02" + struct.pack(">I", len(body))[1:] + body
    return b"\x16" + struct.pack(">HH", 0x0301, len(hs)) + hs


# Not a TLS record: neither a ServerHello nor an alert (mode "garbage").
GARBAGE = b"HTTP/1.0 400 Bad Request\r\n\r\n"


def answer(record, mode):
    """What an RC4-only server of `mode` sends back to the ClientHello `record` (b"": nothing).
    Modes: rc4, never, silent (above) and garbage (bytes that are no TLS record)."""
    version, suites = parse_client_hello(record)
    if not suites & RC4_SUITES or mode == "never":
        return ALERT_HANDSHAKE_FAILURE
    if mode == "rc4":
        return server_hello(min(version, 0x0301))
    if mode == "garbage":
        return GARBAGE
    return b""


def serve(conn, mode):
    with conn:
        try:
            header = recv_exact(conn, 5)
            reply = answer(header + recv_exact(conn, struct.unpack(">H", header[3:5])[0]), mode)
        except (EOFError, ValueError, struct.error, OSError):
            return
        if reply:
            conn.sendall(reply)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["rc4", "never", "silent", "garbage"], required=True)
    args = ap.parse_args()
    serve_loopback(lambda conn: serve(conn, args.mode), backlog=64)


if __name__ == "__main__":
    main()
