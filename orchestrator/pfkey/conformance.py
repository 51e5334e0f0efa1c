"""Send the malformed corpus (orchestrator.pfkey.malformed) to every target of a lab and
record what each answers: an errno, acceptance, or no reply.

    python -m orchestrator.pfkey.conformance LAB [--sample N] [--json FILE] [--doc FILE]

After every message the target must still answer a valid SPDDUMP, and a netkeyd target
must hold the same file descriptors as before it, with a resident size that stays within
RSS_SLACK_KB of where it was after the first messages. "No reply" is read from the
SPDDUMP's answer arriving first: every target answers in order on one socket.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import atomic
from orchestrator.errors import InfraError, SpdlabError
from orchestrator.pfkey import malformed as mf
from orchestrator.pfkey.client import PfkeyClient, PfkeyTimeout

RSS_SLACK_KB = 1024
WARMUP = 50  # messages before the RSS baseline: allocator arenas settle
REPLY_TIMEOUT_S = 20.0
SEQ0 = 0x10000000  # far from a dump's countdown of sequence numbers


@dataclass
class Probe:
    """One target under test: its PF_KEY client, and its process when it is netkeyd."""

    name: str
    client: PfkeyClient
    pid: int | None  # netkeyd's: watched for fds and RSS
    flavour: str
    seq: int = SEQ0
    answers: dict[str, str] = field(default_factory=dict)
    fds: int | None = None
    rss_base_kb: int | None = None
    rss_max_kb: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise InfraError(f"no VmRSS for pid {pid}", step="conformance")


def _describe(err: int) -> str:
    return "accepted" if err == 0 else errno.errorcode.get(err, f"errno {err}")


def _header(m: int, p: Probe, satype: int = 0) -> bytes:
    return mf.HDR.pack(2, m, 0, satype, 2, 0, p.next_seq(), os.getpid())


def exchange(p: Probe, data: bytes, seq: int) -> str:
    """Send data and then an SPDDUMP; what came back for data before the dump's answer."""
    pid = os.getpid()
    p.client.send_raw(data)
    dump = _header(mf.SPDDUMP, p)
    dseq = p.seq
    p.client.send_raw(dump)
    answer = "no reply"
    while True:
        try:
            raw = p.client.recv_raw(REPLY_TIMEOUT_S)
        except PfkeyTimeout:
            raise InfraError(
                f"{p.name}: no answer to a valid SPDDUMP", step="conformance"
            ) from None
        if len(raw) < mf.HDR.size:
            continue
        _v, mtype, err, _s, _l, _r, rseq, rpid = mf.HDR.unpack_from(raw)
        if rpid != pid:
            continue
        if mtype == mf.SPDDUMP and rseq in (dseq, 0):
            if err not in (0, errno.ENOENT):
                raise InfraError(f"{p.name}: SPDDUMP failed: {_describe(err)}", step="conformance")
            return answer
        if rseq == seq and answer == "no reply":
            answer = _describe(err)


def restore(p: Probe) -> None:
    """Empty both databases after a message that was accepted."""
    for m, satype in ((mf.SPDFLUSH, 0), (mf.FLUSH, 0)):
        p.client.send_raw(_header(m, p, satype))
        seq = p.seq
        while True:
            raw = p.client.recv_raw(REPLY_TIMEOUT_S)
            if len(raw) >= mf.HDR.size and mf.HDR.unpack_from(raw)[6] == seq:
                break


def check_leaks(p: Probe, i: int, case: str) -> None:
    if p.pid is None:
        return
    fds = fd_count(p.pid)
    if p.fds is None:
        p.fds = fds
    elif fds != p.fds:
        raise InfraError(f"{p.name}: {fds} fds after {case}, {p.fds} before", step="conformance")
    rss = rss_kb(p.pid)
    if i in (0, WARMUP) or p.rss_base_kb is None:
        p.rss_base_kb = rss
    p.rss_max_kb = max(p.rss_max_kb, rss)
    if i > WARMUP and rss > p.rss_base_kb + RSS_SLACK_KB:
        raise InfraError(
            f"{p.name}: RSS {rss} kB after {case}, {p.rss_base_kb} kB after {WARMUP} messages",
            step="conformance",
        )


def warm_up(p: Probe) -> None:
    """Each valid base message once: what a path allocates the first time it runs (the
    crypto library's tables at the first ADD) is not a leak."""
    for name, raw in mf.bases(p.flavour).items():
        seq = p.next_seq()
        if exchange(p, raw.encode(seq=seq, pid=os.getpid()), seq) == "accepted":
            restore(p)
        check_leaks(p, 0, f"base {name}")


def run_probe(p: Probe, cases: Sequence[mf.Case]) -> None:
    restore(p)
    warm_up(p)
    for i, case in enumerate(cases, 1):
        seq = p.next_seq()
        answer = exchange(p, case.raw.encode(seq=seq, pid=os.getpid()), seq)
        p.answers[case.name] = answer
        if answer == "accepted":
            restore(p)
        check_leaks(p, i, case.name)


def sample(cases: list[mf.Case], n: int | None) -> list[mf.Case]:
    """Every k-th case, so a sample still spans every base and rule."""
    if not n or n >= len(cases):
        return cases
    step = len(cases) / n
    return [cases[int(i * step)] for i in range(n)]


# ------------------------------------------------------------------ the table

NOTES_MARK = "<!-- generated below: python -m orchestrator.pfkey.conformance -->"


def _rows(results: dict[str, dict[str, str]], names: list[str]) -> Iterator[str]:
    targets = list(results)
    yield "| case | " + " | ".join(targets) + " | |"
    yield "|---|" + "---|" * len(targets) + "---|"
    for n in names:
        got = [results[t].get(n, "-") for t in targets]
        seen = {g for g in got if g != "-"}
        yield f"| `{n}` | " + " | ".join(got) + f" | {'same' if len(seen) == 1 else 'differ'} |"


def summary(results: dict[str, dict[str, str]], cases: Sequence[mf.Case]) -> list[str]:
    targets = list(results)
    lines = ["| rule | cases | all agree | " + " | ".join(f"{t} answers" for t in targets) + " |"]
    lines.append("|---|---|---|" + "---|" * len(targets))
    for rule in mf.RULES:
        mine = [c.name for c in cases if c.rules[0] == rule and len(c.rules) == 1]
        if not mine:
            continue
        agree = sum(len({results[t].get(n, "-") for t in targets} - {"-"}) == 1 for n in mine)
        cols = []
        for t in targets:
            counts: dict[str, int] = {}
            for n in mine:
                counts[results[t].get(n, "-")] = counts.get(results[t].get(n, "-"), 0) + 1
            cols.append(
                ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
            )
        lines.append(f"| {rule} | {len(mine)} | {agree} | " + " | ".join(cols) + " |")
    return lines


def write_doc(path: Path, results: dict[str, dict[str, str]], cases: Sequence[mf.Case],
              probes: Sequence[Probe]) -> None:  # fmt: skip
    head = path.read_text().split(NOTES_MARK)[0] if path.exists() else ""
    pairs = sum(len(c.rules) == 2 for c in cases)
    out = [head.rstrip("\n"), "", NOTES_MARK, ""]
    out.append(f"{len(cases)} messages ({pairs} of them two rules at once); per target:")
    out.append("")
    for p in probes:
        leak = (
            f"fds {p.fds} throughout, RSS {p.rss_base_kb} kB after the warm-up and "
            f"{WARMUP} messages, at most {p.rss_max_kb} kB"
            if p.pid
            else "answered every SPDDUMP"
        )
        out.append(f"- **{p.name}** ({p.flavour} sockaddrs): {leak}")
    out += ["", "### By rule (single-rule cases)", "", *summary(results, cases)]
    singles = [c.name for c in cases if len(c.rules) == 1]
    out += ["", "### Every single-rule case", "", *_rows(results, singles), ""]
    atomic.write_text(path, "\n".join(out))


# ------------------------------------------------------------------ CLI


def probes_for(lr) -> Iterator[Probe]:
    for name in lr.targets():
        ep = lr.pfkey_endpoint(name)
        h = lr.driver(name).health(name)
        netkeyd = lr.driver(name).kind in ("netns", "docker")
        pid = h.pid if netkeyd and h.pid and Path(f"/proc/{h.pid}").exists() else None
        yield Probe(name, ep.connect(timeout=REPLY_TIMEOUT_S), pid, getattr(ep, "flavour", "bsd"))


def conform(lr, n: int | None = None) -> tuple[dict[str, dict[str, str]], list[Probe], list]:
    """Run the corpus (or a sample of n) against every target of an up LabRun."""
    probes = list(probes_for(lr))
    cases_by = {p.name: sample(mf.corpus(p.flavour), n) for p in probes}
    try:
        for p in probes:
            run_probe(p, cases_by[p.name])
    finally:
        for p in probes:
            p.client.close()
    allcases = {c.name: c for cs in cases_by.values() for c in cs}
    return {p.name: p.answers for p in probes}, probes, list(allcases.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lab", help="a lab file; every target is brought up and probed")
    ap.add_argument("--sample", type=int, metavar="N", help="only N cases, spread over all")
    ap.add_argument("--json", metavar="FILE", help="every answer, as JSON")
    ap.add_argument("--doc", metavar="FILE", help="the markdown table, after the notes")
    args = ap.parse_args(argv)
    from orchestrator.lab.load import load_lab
    from orchestrator.targets.session import LabRun

    try:
        lr = LabRun.up(load_lab(args.lab))
        try:
            results, probes, cases = conform(lr, args.sample)
        finally:
            lr.down()
    except SpdlabError as e:
        print(f"spdlab: {e}", file=sys.stderr)
        return e.exit_code
    if args.json:
        atomic.write_json(Path(args.json), results, indent=1)
    if args.doc:
        write_doc(Path(args.doc), results, cases, probes)
    differ = sum(len({r.get(c.name) for r in results.values()} - {None}) > 1 for c in cases)
    print(f"{len(cases)} cases, {len(probes)} targets, {differ} where they differ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
