#!/usr/bin/env python3
"""Connection-limit helpers for tests/windows/t-refusal.sh (plain TCP on loopback).

  hold.py hold PORT N CMD...   opens N TCP connections to 127.0.0.1:PORT, runs CMD while they
                               are open, prints CMD's stdout, closes them; exits with CMD's code
  hold.py idle PORT SECONDS    opens one connection, sends nothing, and prints "closed" when the
                               server ends it within SECONDS (after an alert or not), else "open"
"""
import socket
import subprocess
import sys
import time


def main(argv):
    if len(argv) >= 5 and argv[1] == "hold":
        port, n = int(argv[2]), int(argv[3])
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
        time.sleep(0.5)  # let the server accept them all before the probe
        r = subprocess.run(argv[4:], capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        for s in socks:
            s.close()
        return r.returncode
    if len(argv) == 4 and argv[1] == "idle":
        deadline = time.monotonic() + float(argv[3])
        s = socket.create_connection(("127.0.0.1", int(argv[2])), timeout=float(argv[3]))
        try:
            while True:  # the server may send an alert first; closed means end of stream
                s.settimeout(max(0.1, deadline - time.monotonic()))
                if s.recv(4096) == b"":
                    print("closed")
                    break
                if time.monotonic() >= deadline:
                    print("open")
                    break
        except socket.timeout:
            print("open")
        except ConnectionResetError:
            print("closed")
        return 0
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
