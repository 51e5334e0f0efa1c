#!/usr/bin/env python3
"""Wait until PF_KEY v2 control sockets answer SADB_REGISTER with errno 0 (stdlib only).

usage: pfkey_ready.py [--timeout SECONDS] SOCKET...

Every socket is tried in turn until all have answered or the time is up; each one that
did not is named on stderr as "SOCKET: not ready after Ns: why".
"""

import argparse
import os
import socket
import struct
import sys
import time

SADB_REGISTER = 7
SADB_SATYPE_ESP = 3
HEADER = struct.Struct("<BBBBHHII")  # version type errno satype len reserved seq pid


def register_once(path: str, seq: int, wait: float) -> int | None:
    """One SADB_REGISTER; returns the reply's errno, or None if nothing answered."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(wait)
        s.connect(path)
        s.send(HEADER.pack(2, SADB_REGISTER, 0, SADB_SATYPE_ESP, 2, 0, seq, os.getpid()))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reply = s.recv(65536)
            if len(reply) < HEADER.size:
                return None
            version, mtype, errno, _sat, _len, _res, rseq, _pid = HEADER.unpack_from(reply)
            if version == 2 and mtype == SADB_REGISTER and rseq == seq:
                return errno
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sockets", nargs="+", metavar="SOCKET")
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout
    waiting = {path: "no answer" for path in args.sockets}  # socket -> the last reason
    seq = 1
    while waiting and time.monotonic() < deadline:
        for path in list(waiting):
            wait = min(2.0, max(0.1, deadline - time.monotonic()))
            try:
                errno = register_once(path, seq, wait)
                if errno == 0:
                    del waiting[path]
                    continue
                waiting[path] = (
                    f"REGISTER answered errno {errno}" if errno is not None else "short reply"
                )
            except (OSError, TimeoutError) as e:
                waiting[path] = f"{type(e).__name__}: {e}"
            seq += 1
        if waiting:
            time.sleep(0.05)
    for path, last in waiting.items():
        print(f"{path}: not ready after {args.timeout:g}s: {last}", file=sys.stderr)
    return 1 if waiting else 0


if __name__ == "__main__":
    sys.exit(main())
