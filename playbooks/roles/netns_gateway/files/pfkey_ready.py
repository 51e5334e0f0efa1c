#!/usr/bin/env python3
"""Wait until a PF_KEY v2 control socket answers SADB_REGISTER with errno 0 (stdlib only).

usage: pfkey_ready.py SOCKET [--timeout SECONDS]
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
    ap.add_argument("socket")
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout
    last = "no answer"
    seq = 1
    while time.monotonic() < deadline:
        try:
            errno = register_once(args.socket, seq, min(2.0, max(0.1, deadline - time.monotonic())))
            if errno == 0:
                return 0
            last = f"REGISTER answered errno {errno}" if errno is not None else "short reply"
        except (OSError, TimeoutError) as e:
            last = f"{type(e).__name__}: {e}"
        seq += 1
        time.sleep(0.05)
    print(f"{args.socket}: not ready after {args.timeout:g}s: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
