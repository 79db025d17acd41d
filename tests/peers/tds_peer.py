#!/usr/bin/env python3
"""tds_peer.py: a SQL Server stand-in for the probe's tests (test_probe.c).

It answers a TDS PRELOGIN packet (MS-TDS 2.2.6.5) with its own PRELOGIN answer and then does the
TLS handshake carried inside TDS packets of type 0x12, as SQL Server does before LOGIN7, using
Python's ssl module over memory BIOs. It accepts only the protocol versions it is told to.

Usage: tds_peer.py --cert PEM --key PEM [--min V] [--max V] [--not-sup] [--rc4 MODE] [--port N]
  V is tls1, tls1_1, tls1_2 or tls1_3; --not-sup answers ENCRYPT_NOT_SUP (no TLS at all).
  --rc4 MODE: a SQL Server that speaks the legacy protocols only with RC4 (which OpenSSL 3, and so
  Python's ssl, cannot speak): the ClientHello carried in the TDS packets is answered by
  rc4_peer.answer() (rc4: a ServerHello choosing RC4; never: an alert; silent: nothing; garbage:
  bytes that are no TLS record), also inside a TDS packet.
Prints "ACCEPT 127.0.0.1:PORT" once listening (loopback only), serves until killed or until its
stdin closes.
"""
import argparse
import ssl
import struct
import warnings

import rc4_peer  # next to this file, like peerlib
from peerlib import recv_exact, serve_loopback

VERSIONS = {
    "tls1": ssl.TLSVersion.TLSv1,
    "tls1_1": ssl.TLSVersion.TLSv1_1,
    "tls1_2": ssl.TLSVersion.TLSv1_2,
    "tls1_3": ssl.TLSVersion.TLSv1_3,
}


def read_packet(sock):
    header = recv_exact(sock, 8)
    ptype, _status, length = struct.unpack(">BBH", header[:4])
    if length < 8:
        raise ValueError("bad TDS length")
    return ptype, recv_exact(sock, length - 8)


def send_packet(sock, ptype, payload, pid=[0]):
    pid[0] = (pid[0] + 1) & 0xFF
    sock.sendall(struct.pack(">BBHHBB", ptype, 0x01, len(payload) + 8, 0, pid[0], 0) + payload)


def prelogin_answer(encryption):
    data = [
        (0x00, bytes([0x0F, 0x00, 0x07, 0xD0, 0x00, 0x00])),  # VERSION
        (0x01, bytes([encryption])),                        # ENCRYPTION
        (0x02, b"\x00"),                                    # INSTOPT
        (0x03, b""),                                        # THREADID (empty from a server)
        (0x04, b"\x00"),                                    # MARS
    ]
    offset = len(data) * 5 + 1
    table, body = b"", b""
    for token, value in data:
        table += struct.pack(">BHH", token, offset + len(body), len(value))
        body += value
    return table + b"\xff" + body


def handle_rc4(conn, mode):
    """The ClientHello from the TDS packets' payloads, answered as an RC4-only server."""
    record = b""
    while len(record) < 5 or len(record) < 5 + struct.unpack(">H", record[3:5])[0]:
        ptype, payload = read_packet(conn)
        if ptype != 0x12:
            return
        record += payload
    reply = rc4_peer.answer(record, mode)
    if reply:
        send_packet(conn, 0x12, reply)


def handle(conn, ctx, not_sup, rc4):
    try:
        conn.settimeout(10)
        ptype, _ = read_packet(conn)
        if ptype != 0x12:
            return
        send_packet(conn, 0x04, prelogin_answer(0x02 if not_sup else 0x01))
        if not_sup:
            return
        if rc4:
            handle_rc4(conn, rc4)
            return
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = outgoing.read()
                if pending:
                    send_packet(conn, 0x12, pending)
                ptype, payload = read_packet(conn)
                incoming.write(payload)
            except ssl.SSLError:
                break
        pending = outgoing.read()  # the last flight, or the alert of a refusal
        if pending:
            send_packet(conn, 0x12, pending)
    except (OSError, EOFError, ValueError, struct.error):
        pass
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--min", default="tls1_2", choices=VERSIONS)
    ap.add_argument("--max", default="tls1_3", choices=VERSIONS)
    ap.add_argument("--not-sup", action="store_true")
    ap.add_argument("--rc4", choices=["rc4", "never", "silent", "garbage"])
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = VERSIONS[args.min]
    ctx.maximum_version = VERSIONS[args.max]
    ctx.load_cert_chain(args.cert, args.key)
    serve_loopback(lambda conn: handle(conn, ctx, args.not_sup, args.rc4), port=args.port)


if __name__ == "__main__":
    main()
