"""Benchmark mailwarden policyd: requests/s and p50/p99 latency at 1, 8 and 64 connections.

Servers measured in the same run, each in its own process on 127.0.0.1:
  echo      a bare asyncio server that reads one policy request and answers DUNNO
            (the ceiling for any asyncio policy daemon on this machine)
  sqlite    mailwarden policyd on SQLite, warm cache (all checks on)
  mariadb   mailwarden policyd on MariaDB (tests/servers.MariaDB), warm cache
  postfwd   postfwd2 (Debian package) with the equivalent relay rule
  (and, for p99 at a fixed rate, mariadb at 2,000 requests/s)
With ``--workers 1,2`` each policyd is measured once per worker count (``policyd
--workers N``; rows ``sqlite-w2``, ``mariadb-w2``), against the same echo run.

The request is an RCPT for a hosted mailbox from an outside client (relay, recipient,
access, quota, limits and rate-limit checks all run; data comes from the cache), each
in a transaction (``instance``) of its own, and the answer must be DUNNO (checked
before measuring). Load: persistent connections, one request in flight per connection
(as Postfix's smtpd does), from one asyncio client process.

Usage:  PYTHONPATH=src python3 bench/bench_policy.py [--seconds 5] [--json out.json]
            [--workers 1,2] [--skip echo|sqlite|mariadb|postfwd]...
Needs root (MariaDB runs as mysql), mariadbd and postfwd installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

REQUEST = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
    b"client_address=192.0.2.1\nclient_name=unknown\nhelo_name=client.test\n"
    b"sender=someone@outside.test\nrecipient=alice@example.test\n"
    b"size=2048\nsasl_username=\ninstance=%d.%d\n\n"
)
EXPECTED = b"action=DUNNO\n\n"
_conn_ids = iter(range(1, 1 << 30))


def requests() -> Iterator[bytes]:
    """One connection's requests: a new ``instance`` (transaction) each, as from smtpd.

    One transaction id for all requests would make the transaction collect recipients
    until policy.max_recipients (1000), and every later answer would be the 452 of the
    limits check, not the DUNNO of a full pass.
    """
    conn = next(_conn_ids)
    return (REQUEST % (conn, seq) for seq in count())


ECHO_SERVER = r"""
import asyncio, sys
async def handle(r, w):
    try:
        while True:
            data = await r.readuntil(b"\n\n")
            w.write(b"action=DUNNO\n\n")
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"""

POSTFWD_RULES = """\
id=RELAY; recipient_domain=!!example.test; action=REJECT 5.7.1 Relay access denied
id=LOCAL; recipient_domain=example.test; action=DUNNO
"""


def free_port() -> int:
    from tests.servers import free_port as fp

    return fp()


def wait_port(port: int, timeout: float = 20.0) -> None:
    from tests.servers import wait_port as wp

    wp(port, time.monotonic() + timeout)


async def _one(port: int, deadline: float, lat: list[float]) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests():
            if time.perf_counter() >= deadline:
                break
            t0 = time.perf_counter()
            w.write(request)
            await r.readuntil(b"\n\n")
            lat.append(time.perf_counter() - t0)
    finally:
        w.close()


async def _check(port: int) -> None:
    """The benchmark must measure a full pass: refuse to go on if the answer is not DUNNO."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(next(requests()))
    reply = await r.readuntil(b"\n\n")
    w.close()
    if reply != EXPECTED:
        raise SystemExit(f"unexpected reply {reply!r} (expected {EXPECTED!r})")


async def _load(port: int, conns: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    await asyncio.gather(*(_one(port, time.perf_counter() + 0.5, []) for _ in range(conns)))
    start = time.perf_counter()
    await asyncio.gather(*(_one(port, start + seconds, lat) for _ in range(conns)))
    elapsed = time.perf_counter() - start
    return _summary(lat, elapsed)


async def _paced(port: int, rate: float, seconds: float, conns: int = 32) -> dict[str, float]:
    """Open-loop load at ``rate`` requests/s spread over ``conns`` connections."""
    lat: list[float] = []
    per = rate / conns

    base = time.perf_counter() + 0.2

    async def worker(i: int) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        reqs = requests()
        # Staggered: connection i fires at base + i/rate, then every conns/rate, so the
        # requests arrive evenly (like independent smtpd processes), not in bursts.
        t_next = base + i / rate
        end = t_next + seconds
        while t_next < end:
            now = time.perf_counter()
            if now < t_next:
                await asyncio.sleep(t_next - now)
            t0 = time.perf_counter()
            w.write(next(reqs))
            await r.readuntil(b"\n\n")
            lat.append(time.perf_counter() - t0)
            t_next += 1 / per
        w.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(conns)))
    return _summary(lat, time.perf_counter() - start)


def _summary(lat: list[float], elapsed: float) -> dict[str, float]:
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) > 100 else [lat[-1]] * 99
    return {
        "requests": len(lat),
        "rps": round(len(lat) / elapsed),
        "p50_ms": round(q[49] * 1000, 3),
        "p99_ms": round(q[98] * 1000, 3),
    }


def prepare(base: Path, url: str) -> Path:
    """The schema, one domain and one mailbox in ``url``; the config file to use."""
    from tests.conftest import Cli, write_config

    (base / "vmail").mkdir(exist_ok=True)
    cfg = write_config(base / "cfg.toml", url, base / "vmail", "[policy]\ncache_ttl = 60.0\n")
    cli = Cli(cfg, url)
    cli.ok("db", "init")
    cli.ok("domain", "add", "example.test")
    cli.ok("user", "add", "alice@example.test", "--password-stdin", stdin="pw")
    return cfg


def start_policyd(base: Path, cfg: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailwarden.policyd",
            "--config",
            str(cfg),
            "--listen",
            f"127.0.0.1:{port}",
            "--metrics",
            "none",
            "--log-level",
            "warning",
            *(["--workers", str(workers)] if workers > 1 else []),
        ],
        env=env,
        stderr=(base / f"policyd-w{workers}.log").open("wb"),
    )
    wait_port(port)
    return proc, port


def start_echo() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(port)])
    wait_port(port)
    return proc, port


def start_postfwd(base: Path) -> tuple[subprocess.Popen[bytes] | None, int]:
    exe = shutil.which("postfwd2") or shutil.which("postfwd")
    if exe is None:
        return None, 0
    rules = base / "postfwd.cf"
    rules.write_text(POSTFWD_RULES)
    port = free_port()
    pid = base / "postfwd.pid"
    subprocess.run(
        [
            exe,
            "-f",
            str(rules),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-u",
            "nobody",
            "-g",
            "nogroup",
            "--pidfile",
            str(pid),
            "-n",
            "--no_parent_cache",
            "--min_servers",
            "8",
            "--max_servers",
            "80",
            "--min_spare_servers",
            "4",
        ],
        check=True,
    )
    wait_port(port)
    return None, port


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def label(name: str, workers: int) -> str:
    return name if workers == 1 else f"{name}-w{workers}"


def measure(name: str, port: int, seconds: float, results: dict[str, dict[str, object]]) -> None:
    asyncio.run(_check(port))
    results[name] = {}
    for conns in (1, 8, 64):
        r = asyncio.run(_load(port, conns, seconds))
        results[name][str(conns)] = r
        print(
            f"{name:8} conns={conns:3} {r['rps']:7} req/s  p50 {r['p50_ms']:.3f} ms"
            f"  p99 {r['p99_ms']:.3f} ms",
            flush=True,
        )


def paced(name: str, port: int, seconds: float, results: dict[str, dict[str, object]]) -> None:
    """The latency aim: 2,000 requests/s spread evenly over 32 connections."""
    r = asyncio.run(_paced(port, 2000, seconds))
    results[name]["paced_2000"] = r
    print(
        f"{name:8} paced 2000/s: {r['rps']} req/s  p50 {r['p50_ms']:.3f} ms"
        f"  p99 {r['p99_ms']:.3f} ms",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json")
    ap.add_argument("--skip", action="append", default=[], help="echo|sqlite|mariadb|postfwd")
    ap.add_argument(
        "--workers", default="1", help="policyd --workers, comma-separated: 1,2 runs both"
    )
    args = ap.parse_args()
    workers = [int(n) for n in args.workers.split(",")]
    from tests.servers import MariaDB, make_workdir

    base = make_workdir("mw-bench-policy-")
    results: dict[str, dict[str, object]] = {}
    procs: list[subprocess.Popen[bytes] | None] = []
    db = None
    try:
        if "echo" not in args.skip:
            p, port = start_echo()
            procs.append(p)
            measure("echo", port, args.seconds, results)
            paced("echo", port, args.seconds, results)
            stop(p)
        if "sqlite" not in args.skip:
            (base / "sqlite").mkdir()
            cfg = prepare(base / "sqlite", f"sqlite:///{base}/sqlite/db.sqlite")
            for n in workers:
                p, port = start_policyd(base / "sqlite", cfg, n)
                procs.append(p)
                measure(label("sqlite", n), port, args.seconds, results)
                stop(p)
        if "mariadb" not in args.skip:
            db = MariaDB(base)
            db.start()
            url = db.create_database("bench", "bench", "pw")
            (base / "maria").mkdir()
            cfg = prepare(base / "maria", url)
            for n in workers:
                p, port = start_policyd(base / "maria", cfg, n)
                procs.append(p)
                measure(label("mariadb", n), port, args.seconds, results)
                paced(label("mariadb", n), port, args.seconds, results)
                stop(p)
        if "postfwd" not in args.skip:
            _, port = start_postfwd(base)
            if port:
                try:
                    measure("postfwd", port, args.seconds, results)
                finally:
                    pid = (base / "postfwd.pid").read_text().strip()
                    os.kill(int(pid), signal.SIGTERM)
    finally:
        for p in procs:
            stop(p)
        if db is not None:
            db.stop()
        shutil.rmtree(base, ignore_errors=True)
    for name in results:
        if name != "echo" and "echo" in results:
            ratio = results[name]["64"]["rps"] / results["echo"]["64"]["rps"]  # type: ignore[index]
            print(f"{name}/echo at 64 connections: {ratio:.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    tempfile.tempdir = None
    sys.exit(main())
