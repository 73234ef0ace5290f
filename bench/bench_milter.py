"""Benchmark the milter: Postfix smtp-source -> Postfix (+ milter) -> smtp-sink, messages/s.

Configurations, measured in the same run on the same Postfix (tests/servers.Postfix):
  a  no milter                              (the baseline)
  b  mailwarden milter, no scanners         (clamd = "", spamd = "")
  c  mailwarden milter + ClamAV             (real clamd, local EICAR signature)
  d  mailwarden milter + ClamAV + SpamAssassin (real spamd, shipped rules, 2 children)
  e  Debian's clamav-milter + spamass-milter (same clamd/spamd), when installed

Load: ``smtp-source -s CONCURRENCY -m MESSAGES -l SIZE`` to one recipient of a relay
domain whose transport is ``smtp:[127.0.0.1]:SINK`` (``smtp-sink``); the time is from
the start of smtp-source until Postfix's queue is empty (everything handed to the sink).
One warm-up round per configuration is not counted.

Usage:  PYTHONPATH=src python3 bench/bench_milter.py [--messages 500] [--concurrency 10]
        [--size 4096] [--json out.json]
Needs root, postfix, clamd, spamd (scripts/install-deps.sh); (e) needs
``apt-get install clamav-milter spamass-milter``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SRC = str(ROOT / "src")
sys.path.insert(0, SRC)

from tests import servers  # noqa: E402
from tests.integration.test_milter_protocol import (  # noqa: E402
    MilterProcess,
    init_db,
    start_milter,
    write_milter_config,
)

# A pymilter milter that only adds a header: the floor of any pymilter milter. It is
# negotiated like mailwarden's (header and body without replies, nothing else) and gets
# the same TCP_NODELAY listener, so (b) - (t) is mailwarden's own work.
TRIVIAL = """
import sys, Milter
from mailwarden.milter.__main__ import _nodelay_after
class M(Milter.Base):
    @Milter.noreply
    def header(self, n, v): return Milter.CONTINUE
    @Milter.noreply
    def body(self, c): return Milter.CONTINUE
    def eom(self):
        self.addheader("X-Test", "x")
        return Milter.CONTINUE
Milter.factory = M
Milter.set_flags(Milter.ADDHDRS)
address = sys.argv[1]
if address.startswith("inet:"):
    Milter.milter.opensocket = _nodelay_after(Milter.milter.opensocket, address)
Milter.runmilter("t", address, timeout=60)
"""


def milter_entry(port: int | str) -> str:
    """One smtpd_milters entry with contrib/postfix/main.cf.milter's per-milter options."""
    where = port if isinstance(port, str) else f"inet:127.0.0.1:{port}"
    return (
        f"{{ {where}, connect_timeout=10s, command_timeout=30s, content_timeout=120s,"
        " default_action=tempfail }"
    )


def start_mailwarden(
    base: Path, name: str, url: str, kind: str, **milter: str
) -> tuple[MilterProcess, str]:
    """A mailwarden milter on TCP (as contrib ships it) or a unix socket; (process, entry)."""
    if kind == "inet":
        proc = start_milter(base, name, url, **milter)
        return proc, milter_entry(proc.port)
    path = base / f"{name}.sock"
    cfg = write_milter_config(base / f"{name}.toml", url, base / "vmail", **milter)
    proc = MilterProcess(
        cfg, base / f"{name}-tmp", f"unix:{path}", 0, servers.free_port(), base / f"{name}.log"
    )
    proc.start()
    return proc, milter_entry(f"unix:{path}")


def run_load(pf: servers.Postfix, sink_port: int, n: int, conc: int, size: int) -> float:
    """Messages per second for n messages."""
    start = time.monotonic()
    subprocess.run(
        [
            "smtp-source",
            "-s",
            str(conc),
            "-m",
            str(n),
            "-l",
            str(size),
            "-f",
            "load@outside.test",
            "-t",
            "user@sink.test",
            f"127.0.0.1:{pf.smtp_port}",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    pf.wait_queue_empty(timeout=600)
    elapsed = time.monotonic() - start
    rejected = pf.log_text().count("milter-reject")
    if rejected:
        raise RuntimeError(f"{rejected} messages were rejected by a milter")
    return n / elapsed


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def use_milters(pf: servers.Postfix, value: str) -> None:
    pf.postconf("-e", f"smtpd_milters={value}")
    pf.reload()


def start_debian_milters(
    base: Path, clamd: servers.Clamd, spamd: servers.Spamd
) -> tuple[list[subprocess.Popen[bytes]], str] | None:
    if not (shutil.which("clamav-milter") and shutil.which("spamass-milter")):
        return None
    cport, sport = servers.free_port(), servers.free_port()
    conf = base / "clamav-milter.conf"
    conf.write_text(
        f"MilterSocket inet:{cport}@127.0.0.1\nClamdSocket unix:{clamd.socket}\nForeground yes\n"
        "OnInfected Reject\nOnFail Defer\nAddHeader Replace\nMaxFileSize 25M\nUser root\n"
        f"LogFile {base}/clamav-milter.log\n"
    )
    procs = [
        subprocess.Popen(
            ["clamav-milter", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ),
        subprocess.Popen(
            [
                "spamass-milter",
                "-p",
                f"inet:{sport}@127.0.0.1",
                "-m",
                "--",
                "-d",
                "127.0.0.1",
                "-p",
                str(spamd.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    deadline = time.monotonic() + 20
    while not (servers.port_open(cport) and servers.port_open(sport)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            return None
        time.sleep(0.1)
    value = f"{milter_entry(cport)}, {milter_entry(sport)}"
    return procs, value


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every row this often, rows interleaved; report the median",
    )
    ap.add_argument(
        "--socket",
        choices=("inet", "unix"),
        default="inet",
        help="how Postfix reaches the mailwarden milter (default inet, as contrib ships)",
    )
    ap.add_argument(
        "--configs", default="atbcde", help="which rows to run (letters, default atbcde)"
    )
    args = ap.parse_args()
    base = servers.make_workdir("mw-bench-milter-")
    results: dict[str, float | None] = {}
    cpu_ms: dict[str, float] = {}
    sink_port = servers.free_port()
    sink = subprocess.Popen(
        ["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    milters = []
    debian = None
    try:
        clamd = servers.Clamd(base)
        spamd = servers.Spamd(base)
        clamd.start()
        spamd.start()
        # A real database, as in production: allow lists read, traffic counted (the
        # load goes to a relay domain, so no traffic row is written).
        url, _ = init_db(base, "bench")
        kind = args.socket
        bare, bare_entry = start_mailwarden(base, "bare", url, kind, clamd="", spamd="")
        av, av_entry = start_mailwarden(
            base, "av", url, kind, clamd=f"unix:{clamd.socket}", spamd=""
        )
        full, full_entry = start_mailwarden(
            base,
            "full",
            url,
            kind,
            clamd=f"unix:{clamd.socket}",
            spamd=f"127.0.0.1:{spamd.port}",
        )
        milters = [bare, av, full]
        tport = servers.free_port()
        tsock = base / "trivial.sock"
        taddr = f"inet:{tport}@127.0.0.1" if kind == "inet" else f"unix:{tsock}"
        old_umask = os.umask(0)  # the unix socket must be usable by user postfix
        try:
            trivial = subprocess.Popen(
                [sys.executable, "-c", TRIVIAL, taddr], env=dict(os.environ, PYTHONPATH=SRC)
            )
        finally:
            os.umask(old_umask)
        while not (servers.port_open(tport) or servers.unix_socket_open(str(tsock))):
            time.sleep(0.05)
        tentry = milter_entry(tport if kind == "inet" else f"unix:{tsock}")
        pf = servers.Postfix(
            base,
            main_cf_extra={
                "relay_domains": "sink.test",
                "relay_transport": f"smtp:[127.0.0.1]:{sink_port}",
                "smtp_connection_cache_on_demand": "yes",
                "default_process_limit": "100",
                "milter_default_action": "tempfail",
            },
        )
        pf.start()
        debian = start_debian_milters(base, clamd, spamd)
        plan: list[tuple[str, str | None]] = [
            ("a no milter", ""),
            ("t trivial pymilter (ceiling)", tentry),
            ("b milter, no scanners", bare_entry),
            ("c milter + ClamAV", av_entry),
            ("d milter + ClamAV + SpamAssassin", full_entry),
            ("e clamav-milter + spamass-milter", debian[1] if debian else None),
        ]
        pids: dict[str, list[int]] = {
            "t": [trivial.pid],
            "b": [bare.pid],
            "c": [av.pid],
            "d": [full.pid],
            "e": [p.pid for p in debian[0]] if debian else [],
        }
        runs: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        todo = [(n, v) for n, v in plan if n[0] in args.configs]
        for name, value in todo:
            if value is None:
                results[name] = None
                print(f"{name:40s} not installed/startable")
        todo = [(n, v) for n, v in todo if v is not None]
        for round_no in range(args.rounds):
            for name, value in todo:
                assert value is not None
                use_milters(pf, value)
                if round_no == 0:  # warm-up, not counted
                    warm = max(20, args.messages // 10)
                    run_load(pf, sink_port, warm, args.concurrency, args.size)
                before = cpu_seconds(pids.get(name[0], []))
                rate = run_load(pf, sink_port, args.messages, args.concurrency, args.size)
                used = cpu_seconds(pids.get(name[0], [])) - before
                runs.setdefault(name, []).append(rate)
                cpu.setdefault(name, []).append(1000 * used / args.messages)
                print(
                    f"round {round_no + 1}: {name:40s} {rate:8.1f} msg/s"
                    f"  milter CPU {1000 * used / args.messages:5.2f} ms/msg",
                    flush=True,
                )
        for name, rates in runs.items():
            results[name] = statistics.median(rates)
            cpu_ms[name] = statistics.median(cpu[name])
        print(f"median of {args.rounds} round(s):")
        for name, rate in results.items():
            if rate is not None:
                print(f"{name:40s} {rate:8.1f} msg/s  milter CPU {cpu_ms[name]:5.2f} ms/msg")
        pf.stop()
        clamd.stop()
        spamd.stop()
    finally:
        for proc in debian[0] if debian else ():
            proc.terminate()
        for m in milters:
            m.stop()
        sink.terminate()
        if "trivial" in locals():
            trivial.terminate()
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)
    a, b = results.get("a no milter"), results.get("b milter, no scanners")
    d, e = (
        results.get("d milter + ClamAV + SpamAssassin"),
        results.get("e clamav-milter + spamass-milter"),
    )
    if a and b:
        print(f"(b)/(a) = {b / a:.2f}")
    if d and e:
        print(f"(d)/(e) = {d / e:.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"args": vars(args), "msgs_per_s": results, "milter_cpu_ms_per_msg": cpu_ms},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
