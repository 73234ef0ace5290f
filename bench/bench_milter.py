"""Benchmark the milter (not a test): what a milter costs Postfix, next to the protocol's floor.

Load: ``smtp-source -s CONCURRENCY -m MESSAGES -l SIZE`` through Postfix (tests/servers.
Postfix, the same instance for every row) to one recipient of a relay domain whose
transport is ``smtp:[127.0.0.1]:SINK`` (``smtp-sink``). A row's time runs from the start
of smtp-source until Postfix's queue is empty, polled every 5 ms (the earlier back-off
to 200 ms made a fast row's time jump by up to 0.2 s); any deferred message stops the run.

Rows (``--rows``, default all; the socket is how Postfix reaches the milter):
  a          no milter (the baseline)
  f-inet     C do-nothing milter on TCP         } bench/milter_floor.c, built now with
  f-unix     C do-nothing milter, unix socket   } gcc + libmilter: the protocol's floor
  B-inet     mailwarden BEFORE, no scanners (TCP)    } only with --before-src DIR: the
  B-unix     mailwarden BEFORE, no scanners (unix)   } same milter from an older checkout
  b-inet     mailwarden, no scanners, TCP
  b-unix     mailwarden, no scanners, unix socket (the default setup writes)
  d-unix     mailwarden + ClamAV + SpamAssassin (real clamd, real spamd: 2 children)
  e-unix     Debian's clamav-milter + spamass-milter on the same clamd/spamd
             (installed with apt-get by this script when missing)
The scanning rows (d, e) send ``--scan-messages`` messages (spamd is the bottleneck).

Rounds: every row once per round, rows interleaved and the order rotated each round;
round 1 is preceded by a warm-up per row. Reported per round and as the median of the
rounds: messages/s, each milter's CPU per message (user+system of its processes), and
the ratios b/a, b/f (same socket), f/a, d/e. Then latency at concurrency 1: one SMTP
session per row and round (smtplib), ``--latency-messages`` messages, the time from MAIL
FROM to the reply to the final dot, median over all rounds; "added" is that minus row a.

Usage (root; postfix, clamd, spamd, smtp-source from scripts/install-deps.sh; gcc and
libmilter-dev for the floor):
    PYTHONPATH=src python3 bench/bench_milter.py [--rounds 3] [--messages 1000]
        [--concurrency 10] [--size 4096] [--scan-messages 200] [--latency-messages 40]
        [--rows a,f-unix,b-unix] [--before-src /path/to/old/src] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

from tests import servers  # noqa: E402
from tests.integration.test_milter_protocol import init_db, write_milter_config  # noqa: E402

FLOOR_SOURCE = ROOT / "bench" / "milter_floor.c"
ALL_ROWS = ("a", "f-inet", "f-unix", "B-inet", "B-unix", "b-inet", "b-unix", "d-unix", "e-unix")
LABELS = {
    "a": "no milter",
    "f": "C do-nothing libmilter milter",
    "B": "mailwarden BEFORE, no scanners",
    "b": "mailwarden, no scanners",
    "d": "mailwarden + ClamAV + SpamAssassin",
    "e": "clamav-milter + spamass-milter",
}


def label(row: str) -> str:
    kind, _, sock = row.partition("-")
    return f"{row:7s} {LABELS[kind]}" + (
        f" ({'tcp' if sock == 'inet' else 'unix'})" if sock else ""
    )


@dataclass
class Row:
    """One configuration: what ``smtpd_milters`` is set to and whose CPU is counted."""

    name: str
    milters: str = ""
    pids: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)


def milter_entry(where: str) -> str:
    """One smtpd_milters entry with contrib/postfix/main.cf.milter's per-milter options."""
    return (
        f"{{ {where}, connect_timeout=10s, command_timeout=30s, content_timeout=120s,"
        " default_action=tempfail }"
    )


def postfix_address(libmilter: str) -> str:
    """``inet:PORT@HOST`` -> ``inet:HOST:PORT``; ``unix:/p`` stays."""
    if libmilter.startswith("inet:"):
        port, _, host = libmilter[5:].partition("@")
        return f"inet:{host}:{port}"
    return libmilter


def listen_address(base: Path, name: str, sock: str) -> str:
    if sock == "inet":
        return f"inet:{servers.free_port()}@127.0.0.1"
    return f"unix:{base}/{name}.sock"


def wait_listening(address: str, procs: list[subprocess.Popen[bytes]], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if address.startswith("unix:"):
            ready = servers.unix_socket_open(address[5:])
        else:
            port, _, host = address[5:].partition("@")
            ready = servers.port_open(int(port), host)
        if ready:
            return
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{what} did not start on {address}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- milters


def build_floor(tmp: Path) -> Path:
    """Compile bench/milter_floor.c (gcc, libmilter-dev) into tmp."""
    if not Path("/usr/include/libmilter/mfapi.h").exists():
        subprocess.run(["apt-get", "install", "-y", "libmilter-dev"], check=True)
    binary = tmp / "milter_floor"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(binary), str(FLOOR_SOURCE), "-lmilter", "-lpthread"],
        check=True,
    )
    return binary


def start_floor(binary: Path, address: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(binary), address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_listening(address, [proc], "milter_floor")
    return proc


def start_mailwarden(
    base: Path, name: str, url: str, address: str, src: Path, **milter: str
) -> subprocess.Popen[bytes]:
    """``python -m mailwarden.milter`` from ``src`` (this checkout's, or --before-src)."""
    cfg = write_milter_config(base / f"{name}.toml", url, base / "vmail", **milter)
    (base / f"{name}-tmp").mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(src), TMPDIR=str(base / f"{name}-tmp"))
    command = [sys.executable, "-m", "mailwarden.milter", "--config", str(cfg)]
    with open(base / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            [*command, "--listen", address, "--metrics", "none"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_listening(address, [proc], f"mailwarden milter {name}")
    return proc


def start_debian_milters(
    base: Path, clamd: servers.Clamd, spamd: servers.Spamd
) -> tuple[list[subprocess.Popen[bytes]], str]:
    """clamav-milter and spamass-milter on private unix sockets (installed when missing)."""
    if not (shutil.which("clamav-milter") and shutil.which("spamass-milter")):
        subprocess.run(
            ["apt-get", "install", "-y", "clamav-milter", "spamass-milter"],
            check=True,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
        )
    csock, ssock = base / "clamav-milter.sock", base / "spamass-milter.sock"
    conf = base / "clamav-milter.conf"
    conf.write_text(
        f"MilterSocket unix:{csock}\nMilterSocketMode 666\nClamdSocket unix:{clamd.socket}\n"
        "Foreground yes\nOnInfected Reject\nOnFail Defer\nAddHeader Replace\n"
        f"MaxFileSize 25M\nUser root\nLogFile {base}/clamav-milter.log\n"
    )
    old = os.umask(0)  # spamass-milter's socket must be usable by user postfix
    try:
        procs = [
            subprocess.Popen(
                ["clamav-milter", "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                ["spamass-milter", "-p", f"unix:{ssock}", "-m", "--"]
                + ["-d", "127.0.0.1", "-p", str(spamd.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        ]
    finally:
        os.umask(old)
    wait_listening(f"unix:{csock}", procs, "clamav-milter")
    wait_listening(f"unix:{ssock}", procs, "spamass-milter")
    return procs, f"{milter_entry(f'unix:{csock}')}, {milter_entry(f'unix:{ssock}')}"


# --------------------------------------------------------------------------- measuring


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


def wait_drained(pf: servers.Postfix, timeout: float = 600.0) -> None:
    """Until Postfix's queue is empty, looked at every 5 ms; a deferral is an error."""
    deadline = time.monotonic() + timeout
    polls = 0
    while pf.queue_ids():
        polls += 1
        if polls % 20 == 0 and any(p.is_file() for p in (pf.queue_dir / "deferred").rglob("*")):
            raise RuntimeError(f"messages deferred:\n{pf.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue not empty after {timeout}s")
        time.sleep(0.005)


def run_load(pf: servers.Postfix, n: int, conc: int, size: int) -> float:
    """Messages per second for n messages through smtpd, queue drained."""
    start = time.monotonic()
    subprocess.run(
        ["smtp-source", "-s", str(conc), "-m", str(n), "-l", str(size)]
        + ["-f", "load@outside.test", "-t", "user@sink.test", f"127.0.0.1:{pf.smtp_port}"],
        check=True,
        capture_output=True,
        timeout=900,
    )
    wait_drained(pf)
    return n / (time.monotonic() - start)


def latencies(pf: servers.Postfix, n: int, size: int) -> list[float]:
    """Milliseconds from MAIL FROM to the reply to the final dot, one session, c = 1."""
    body = ("x" * 70 + "\r\n") * max(1, size // 72)
    out = []
    with smtplib.SMTP("127.0.0.1", pf.smtp_port, timeout=60) as smtp:
        smtp.ehlo("bench.test")
        for i in range(n + 3):
            msg = f"From: l@outside.test\r\nTo: user@sink.test\r\nSubject: c1 {i}\r\n\r\n{body}"
            start = time.perf_counter()
            smtp.sendmail("l@outside.test", ["user@sink.test"], msg)
            if i >= 3:  # the first messages open the milter connection(s)
                out.append((time.perf_counter() - start) * 1000)
    wait_drained(pf)
    return out


def use(pf: servers.Postfix, row: Row) -> None:
    pf.postconf("-e", f"smtpd_milters={row.milters}")
    pf.reload()
    time.sleep(0.3)  # old smtpd processes finish and exit


# --------------------------------------------------------------------------- report


def ratio(rows: dict[str, Row], top: str, bottom: str, i: int) -> float | None:
    if top in rows and bottom in rows and i < len(rows[top].rates) and i < len(rows[bottom].rates):
        return rows[top].rates[i] / rows[bottom].rates[i]
    return None


RATIOS = (
    ("b-unix", "a"),
    ("b-inet", "a"),
    ("b-unix", "f-unix"),
    ("b-inet", "f-inet"),
    ("f-unix", "a"),
    ("f-inet", "a"),
    ("B-unix", "a"),
    ("B-inet", "a"),
    ("d-unix", "e-unix"),
)


def report(rows: dict[str, Row], rounds: int, say: Callable[[str], None]) -> dict[str, object]:
    say(f"\nmedian of {rounds} round(s)          msg/s   milter CPU ms/msg   c=1 ms  added ms")
    base_lat = statistics.median(rows["a"].latency_ms) if "a" in rows else None
    result: dict[str, object] = {"rows": {}, "ratios": {}}
    for name, row in rows.items():
        rate = statistics.median(row.rates)
        cpu = statistics.median(row.cpu_ms)
        lat = statistics.median(row.latency_ms) if row.latency_ms else float("nan")
        added = lat - base_lat if base_lat is not None else float("nan")
        say(f"{label(name):52s} {rate:7.1f}   {cpu:6.2f}   {lat:8.2f} {added:8.2f}")
        result["rows"][name] = {  # type: ignore[index]
            "msgs_per_s": row.rates,
            "median_msgs_per_s": rate,
            "milter_cpu_ms_per_msg": cpu,
            "c1_latency_ms_median": lat,
            "c1_added_ms": added,
        }
    say("\nratios per round (same round, same Postfix) and their median:")
    for top, bottom in RATIOS:
        values = [ratio(rows, top, bottom, i) for i in range(rounds)]
        got = [v for v in values if v is not None]
        if got:
            per = " ".join(f"{v:5.2f}" for v in got)
            say(f"  {top:7s}/ {bottom:7s}  {per}   median {statistics.median(got):5.2f}")
            result["ratios"][f"{top}/{bottom}"] = got  # type: ignore[index]
    return result


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--scan-messages", type=int, default=200)
    ap.add_argument("--latency-messages", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rows", default=",".join(r for r in ALL_ROWS if r[0] != "B"))
    ap.add_argument("--before-src", type=Path, help="src/ of an older checkout: rows B-*")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    wanted = [r for r in args.rows.split(",") if r]
    if args.before_src:
        wanted += [r for r in ("B-inet", "B-unix") if r not in wanted]
    unknown = set(wanted) - set(ALL_ROWS)
    if unknown:
        ap.error(f"unknown rows {sorted(unknown)}; known: {','.join(ALL_ROWS)}")
    wanted = [r for r in ALL_ROWS if r in wanted]

    def say(text: str) -> None:
        print(text, flush=True)

    say(
        f"bench_milter {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {os.cpu_count()} CPUs  "
        f"load {Path('/proc/loadavg').read_text().strip()}"
    )
    say(f"args: {vars(args)}")
    base = servers.make_workdir("mw-bench-milter-")
    build_dir = Path(tempfile.mkdtemp(prefix="mw-floor-"))
    procs: list[subprocess.Popen[bytes]] = []
    sink = subprocess.Popen(
        ["smtp-sink", "-u", "nobody", f"127.0.0.1:{(sink_port := servers.free_port())}", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    clamd = spamd = None
    pf = None
    try:
        url, _ = init_db(base, "bench")  # allow lists read, traffic counted (relay: none)
        rows: dict[str, Row] = {}
        scanning = any(r[0] in "de" for r in wanted)
        if scanning:
            clamd, spamd = servers.Clamd(base), servers.Spamd(base)
            clamd.start()
            spamd.start()
        floor = build_floor(build_dir) if any(r[0] == "f" for r in wanted) else None
        for name in wanted:
            kind, _, sock = name.partition("-")
            row = Row(name)
            if kind in "fBb":
                address = listen_address(base, name, sock)
                if kind == "f":
                    assert floor is not None
                    procs.append(start_floor(floor, address))
                    row.pids = [procs[-1].pid]
                else:
                    src = args.before_src if kind == "B" else SRC
                    procs.append(
                        start_mailwarden(base, name, url, address, src, clamd="", spamd="")
                    )
                    row.pids = [procs[-1].pid]
                row.milters = milter_entry(postfix_address(address))
            elif kind == "d":
                assert clamd is not None and spamd is not None
                address = listen_address(base, name, sock)
                procs.append(
                    start_mailwarden(
                        base,
                        name,
                        url,
                        address,
                        SRC,
                        clamd=f"unix:{clamd.socket}",
                        spamd=f"127.0.0.1:{spamd.port}",
                    )
                )
                row.pids = [procs[-1].pid]
                row.milters = milter_entry(postfix_address(address))
            elif kind == "e":
                assert clamd is not None and spamd is not None
                peers, row.milters = start_debian_milters(base, clamd, spamd)
                procs.extend(peers)
                row.pids = [p.pid for p in peers]
            rows[name] = row
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
        order = list(rows.values())
        for rnd in range(args.rounds):
            shift = rnd % len(order)
            for row in order[shift:] + order[:shift]:
                n = args.scan_messages if row.name[0] in "de" else args.messages
                use(pf, row)
                if rnd == 0:
                    run_load(pf, max(20, n // 10), args.concurrency, args.size)
                before = cpu_seconds(row.pids)
                rate = run_load(pf, n, args.concurrency, args.size)
                cpu = 1000 * (cpu_seconds(row.pids) - before) / n
                row.rates.append(rate)
                row.cpu_ms.append(cpu)
                lat = latencies(pf, args.latency_messages, args.size)
                row.latency_ms.extend(lat)
                say(
                    f"round {rnd + 1}: {label(row.name):52s} {rate:7.1f} msg/s  "
                    f"milter CPU {cpu:5.2f} ms/msg  c=1 {statistics.median(lat):6.2f} ms"
                )
        rejected = pf.log_text().count("milter-reject")
        if rejected:
            raise RuntimeError(f"{rejected} messages were rejected by a milter")
        result = report(rows, args.rounds, say)
        say(f"end {time.strftime('%H:%M:%S')}  load {Path('/proc/loadavg').read_text().strip()}")
        if args.json:
            result["args"] = {k: str(v) for k, v in vars(args).items()}
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        if pf is not None:
            pf.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for server in (clamd, spamd):
            if server is not None:
                server.stop()
        sink.terminate()
        shutil.rmtree(build_dir, ignore_errors=True)
        if not os.environ.get("MAILWARDEN_KEEP_TEST_DIR"):
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
