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
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests import servers  # noqa: E402
from tests.integration.test_milter_protocol import start_milter  # noqa: E402

# A pymilter milter that only adds a header: what any pymilter milter costs.
TRIVIAL = """
import sys, Milter
class M(Milter.Base):
    def header(self, n, v): return Milter.CONTINUE
    def body(self, c): return Milter.CONTINUE
    def eom(self):
        self.addheader("X-Test", "x")
        return Milter.CONTINUE
Milter.factory = M
Milter.set_flags(Milter.ADDHDRS)
Milter.runmilter("t", "inet:%s@127.0.0.1" % sys.argv[1], timeout=60)
"""


def milter_entry(port: int) -> str:
    return f"{{ inet:127.0.0.1:{port}, connect_timeout=10s, default_action=tempfail }}"


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
    args = ap.parse_args()
    base = servers.make_workdir("mw-bench-milter-")
    results: dict[str, float | None] = {}
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
        url = f"sqlite:///{base}/none.sqlite"  # no database: allow lists/traffic off
        bare = start_milter(base, "bare", url, clamd="", spamd="")
        av = start_milter(base, "av", url, clamd=f"unix:{clamd.socket}", spamd="")
        full = start_milter(
            base, "full", url, clamd=f"unix:{clamd.socket}", spamd=f"127.0.0.1:{spamd.port}"
        )
        milters = [bare, av, full]
        tport = servers.free_port()
        trivial = subprocess.Popen([sys.executable, "-c", TRIVIAL, str(tport)])
        while not servers.port_open(tport):
            time.sleep(0.05)
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
            ("t trivial pymilter (ceiling)", milter_entry(tport)),
            ("b milter, no scanners", milter_entry(bare.port)),
            ("c milter + ClamAV", milter_entry(av.port)),
            ("d milter + ClamAV + SpamAssassin", milter_entry(full.port)),
            ("e clamav-milter + spamass-milter", debian[1] if debian else None),
        ]
        for name, value in plan:
            if value is None:
                results[name] = None
                print(f"{name:40s} not installed/startable")
                continue
            use_milters(pf, value)
            run_load(pf, sink_port, max(20, args.messages // 10), args.concurrency, args.size)
            rate = run_load(pf, sink_port, args.messages, args.concurrency, args.size)
            results[name] = rate
            print(f"{name:40s} {rate:8.1f} msg/s", flush=True)
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
            json.dumps({"args": vars(args), "msgs_per_s": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
