"""SpdPoller — netkeyd's admin protocol, answered for a real kernel by polling SPDDUMP.

A real kernel has no tick ring, so this adapter keeps one. Its clock is a count of
SPDDUMP observations: one every tick_ms (1 Hz by default), one per `stats` request and
N per `tick N`. Each observation becomes a tick record whose levels come from the dump
and whose deltas compare it with the observation before. Every record and every
`stats` answer says `"resolution": "spddump-poll"`.

What a dump shows and what it does not:
- alive in/out: the policies listed, by direction (forward policies only count towards
  allocated). dead in/out: always 0; af_key unlinks on delete and flush at once (spec §7)
  and a dump never lists an unlinked policy.
- allocated: the linked count. A Linux policy unlinked while still referenced stays in
  memory until its last reference goes; nothing on PF_KEY shows it.
- unlinked: policy ids in the previous dump and not in this one. freed: the same number,
  as frees cannot be told from unlinks.
- premature_frees, use_after_free, lookups, walked, ESP and flow counters: 0, not
  observable through PF_KEY; listed under "not_observable".

With `kstat` (a qemu guest's pfkey_relay STAT, orchestrator.targets.kstat) every
observation also reads the kernel's own counters, and the record says
`"counters": "kernel"`:
- allocated: policies allocated and not yet freed, from the kprobe hit counts on
  xfrm_policy_alloc and xfrm_policy_destroy_rcu (or the census patch); freed: the
  frees since the previous observation; deleted_allocated: allocated minus linked,
  the policies unlinked but still held (by bundles);
- bundles: xfrm_dst_cache's active objects in /proc/slabinfo;
- esp_ok: packets the inbound SAs accepted (their CURRENT lifetime's allocations, from
  SADB_DUMP); esp_drop: the XfrmIn* counters of /proc/net/xfrm_stat, as deltas;
- xfrm_stat: every /proc/net/xfrm_stat counter, as totals.
A kernel without a counter keeps the dump's reading for it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from orchestrator.errors import SpdlabError
from orchestrator.targets.kstat import KernelCounters
from orchestrator.wait import WaitTimeout, until

RESOLUTION = "spddump-poll"
DUMP_TIMEOUT_S = 120.0  # thousands of policies from a TCG guest on a loaded machine
RING = 1 << 16
NOT_OBSERVABLE = (
    "premature_frees",
    "use_after_free",
    "lookups",
    "lookup_walked",
    "esp",
    "flows",
    "sad",
)
IN, OUT = 1, 2


class SpdPoller:
    """SpdPoller — a stats endpoint for a kernel reached over PF_KEY.

    Args:
        control: the target's PF_KEY socket (Unix SOCK_SEQPACKET).
        build: the build name `version` reports.
        kernel: the guest kernel's release.
        tick_ms: the timer's period; 0: observe only on requests.
        flavour: the kernel's sockaddr flavour ("linux", or "bsd" for a BSD board).
        tree: the tree `version` reports (the kernel's OS).
        kstat: reads the guest kernel's counters (RelayBridge.stat); None: SPDDUMP only.
        flows: replaces the guest's own flows (RelayBridge.flows), for `guestflows PATH`.
    """

    def __init__(self, control: str, build: str = "linux-af_key", kernel: str = "",
                 tick_ms: int = 1000, flavour: str = "linux", tree: str = "linux",
                 kstat: Callable[[], str] | None = None,
                 flows: Callable[[str], None] | None = None):  # fmt: skip
        self.control = control
        self.flavour = flavour
        self.tree = tree
        self.build = build
        self.kernel = kernel
        self.tick_ms = tick_ms
        self.now = 0
        self.unlinked = 0
        self.flushes = 0
        self.ids: set[int] = set()
        self.level = {"alive_in": 0, "alive_out": 0, "allocated": 0}
        self.policies: list[dict[str, Any]] = []
        self.ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=RING)
        self.error = ""
        self.meta: dict[str, Any] = {}  # a kernel build's versions (orchestrator.kernel)
        self.kstat = kstat
        self.flows = flows
        self.kernel_counters: KernelCounters | None = None
        self.esp_ok = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------ observing

    def _pfkey(self):
        from orchestrator.pfkey.client import PfkeyClient

        return PfkeyClient(self.control, timeout=DUMP_TIMEOUT_S, flavour=self.flavour)

    def _dump(self) -> list:
        with self._pfkey() as c:
            return c.spddump()

    def _sa_packets(self) -> int:
        """Packets every ESP SA accepted: their CURRENT lifetime's allocations (SADB_DUMP)."""
        from orchestrator.pfkey.codec import Msg
        from orchestrator.pfkey.wire import ExtType, MsgType, SaType

        with self._pfkey() as c:
            sas = c.dump(Msg(MsgType.DUMP, satype=SaType.ESP))
        return sum(getattr(m.get(ExtType.LIFETIME_CURRENT), "allocations", 0) for m in sas)

    def _kernel(self, rec: dict[str, Any], linked: int) -> None:
        """The guest kernel's counters into the record (only those it has)."""
        assert self.kstat is not None
        k = KernelCounters.parse(self.kstat())
        rec["counters"] = "kernel"
        before, self.kernel_counters = self.kernel_counters, k
        if k.allocated is not None:
            freed = k.frees - before.frees if before and before.frees is not None else 0
            rec.update(allocated=k.allocated, freed=freed,
                       deleted_allocated=max(0, k.allocated - linked))  # fmt: skip
        if k.bundles is not None:
            rec["bundles"] = k.bundles
        if k.in_errors is not None:
            prev = before.in_errors if before else None
            rec["esp_drop"] = k.in_errors - prev if prev is not None else 0
            rec["xfrm_stat"] = k.xfrm_stat
        # SAs come and go with the trials: count only growth, per observation.
        esp_ok = self._sa_packets()
        rec["esp_ok"] = max(0, esp_ok - self.esp_ok)
        self.esp_ok = esp_ok
        self.level["allocated"] = rec["allocated"]

    def observe(self) -> dict[str, Any]:
        """One SPDDUMP: a new tick and its record."""
        with self._lock:
            try:
                entries = self._dump()
                self.error = ""
            except (SpdlabError, OSError) as e:
                self.error = f"SPDDUMP: {e}"
                raise
            ids = {e.policy.id for e in entries if e.policy is not None}
            gone = len(self.ids - ids)
            self.ids = ids
            self.unlinked += gone
            dirs = [e.policy.dir for e in entries if e.policy is not None]
            self.level = {
                "alive_in": dirs.count(IN),
                "alive_out": dirs.count(OUT),
                "allocated": len(entries),
            }
            self.policies = [
                {"id": e.policy.id, "dir": e.policy.dir, "refcnt": e.reserved, "linked": True}
                for e in entries
                if e.policy is not None
            ]
            self.now += 1
            rec = {
                "tick": self.now,
                "unlinked": gone,
                "freed": gone,
                "premature": 0,
                "uaf": 0,
                "dead_in": 0,
                "dead_out": 0,
                "lookups": 0,
                "walked": 0,
                "esp_ok": 0,
                "esp_drop": 0,
                "flows": 0,
                "resolution": RESOLUTION,
                "time": time.time(),
                **self.level,
            }
            if self.kstat is not None:
                try:
                    self._kernel(rec, len(entries))
                except (SpdlabError, OSError) as e:
                    self.error = f"STAT: {e}"
                    raise
            self.ring.append(rec)
            return rec

    def stats(self) -> dict[str, Any]:
        self.observe()
        lv = self.level
        return {
            "now": self.now,
            "ticks": self.now,
            "gen": 0,
            "resolution": RESOLUTION,
            "not_observable": list(NOT_OBSERVABLE),
            "spd": {
                "alive": {"in": lv["alive_in"], "out": lv["alive_out"]},
                "dead": {"in": 0, "out": 0},
                "allocated": lv["allocated"],
                "unlinked": self.unlinked,
                "freed": self.unlinked,
                "premature_frees": 0,
                "use_after_free": 0,
                "lookups": 0,
                "lookup_walked": 0,
                "flushes": self.flushes,
            },
        }

    def ticks(self, since: int) -> dict[str, Any]:
        with self._lock:
            recs = [r for r in self.ring if r["tick"] > since]
            return {"ticks": recs, "last": self.now, "resolution": RESOLUTION}

    # ------------------------------------------------------------ the admin protocol

    def answer(self, line: str) -> dict[str, Any]:
        words = line.split()
        cmd, args = (words[0], words[1:]) if words else ("", [])
        try:
            if cmd == "ping":
                return {"ok": True}
            if cmd == "version":
                return {"build": self.build, "tree": self.tree, "patches": [],
                        "kernel": self.kernel, "tick_ms": self.tick_ms,
                        "resolution": RESOLUTION, "pid": os.getpid(), **self.meta}  # fmt: skip
            if cmd == "stats":
                return self.stats()
            if cmd == "ticks":
                return self.ticks(int(args[0]) if args else 0)
            if cmd == "tick":
                recs = [self.observe() for _ in range(int(args[0]) if args else 1)]
                return {"now": self.now, "ticks": recs}
            if cmd == "guestflows" and self.flows is not None and len(args) == 1:
                with open(args[0]) as f:
                    self.flows(f.read())
                return {"ok": True}
            if cmd == "policies":
                self.observe()
                return {"policies": self.policies, "resolution": RESOLUTION}
        except (SpdlabError, OSError) as e:
            return {"error": str(e)}
        except ValueError:
            return {"error": f"bad argument: {line.strip()}"}
        return {"error": f"'{cmd}' is not answered for a real kernel (SPDDUMP polling)"}

    def _timer(self) -> None:
        while self.tick_ms > 0:
            time.sleep(self.tick_ms / 1000)
            with contextlib.suppress(SpdlabError, OSError):
                self.observe()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for raw in f:
                doc = self.answer(raw.decode(errors="replace"))
                f.write(json.dumps(doc).encode() + b"\n")
                f.flush()

    def serve(self, path: str) -> None:
        """Serve the admin socket (Unix SOCK_STREAM) and run the 1 Hz timer."""
        with contextlib.suppress(WaitTimeout):  # the first observation says what is missing
            until(lambda: os.path.exists(self.control), f"the relay's {self.control}", 10)
        with contextlib.suppress(SpdlabError, OSError):
            self.observe()  # tick 1: the table as the lab found it
        threading.Thread(target=self._timer, daemon=True).start()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path + ".tmp")
        os.chmod(path + ".tmp", 0o600)
        srv.listen(16)
        os.replace(path + ".tmp", path)
        print(f"spdpoll: serving {path}", file=sys.stderr, flush=True)
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()
